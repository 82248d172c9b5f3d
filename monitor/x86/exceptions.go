package x86

import "fmt"

// Exception vectors the monitor tells apart by number. Both backends and
// the monitor's error messages take them from here, so that a vector means
// the same on either.
const (
	VecDE = 0  // divide error
	VecDB = 1  // debug
	VecBP = 3  // breakpoint
	VecBR = 5  // bound range exceeded
	VecUD = 6  // invalid opcode
	VecSS = 12 // stack-segment fault
	VecGP = 13 // general protection
	VecPF = 14 // page fault
	VecMF = 16 // x87 floating-point error
	VecAC = 17 // alignment check
	VecMC = 18 // machine check
	VecXM = 19 // SIMD floating-point exception
	VecCP = 21 // control protection
)

var vectorNames = [NumVectors]string{
	0: "#DE divide error", 1: "#DB debug", 2: "NMI", 3: "#BP breakpoint", 4: "#OF overflow",
	5: "#BR bound range", 6: "#UD invalid opcode", 7: "#NM device not available",
	8: "#DF double fault", 10: "#TS invalid TSS", 11: "#NP segment not present",
	12: "#SS stack fault", 13: "#GP general protection", 14: "#PF page fault",
	16: "#MF x87 error", 17: "#AC alignment check", 18: "#MC machine check",
	19: "#XM SIMD error", 20: "#VE virtualization", 21: "#CP control protection",
	28: "#HV hypervisor injection", 29: "#VC VMM communication", 30: "#SX security",
}

// VectorName names exception vector v, e.g. "#PF page fault", or "vector N"
// for one without a name.
func VectorName(v uint8) string {
	if int(v) < len(vectorNames) && vectorNames[v] != "" {
		return vectorNames[v]
	}
	return fmt.Sprintf("vector %d", v)
}

// HasErrorCode reports whether the CPU pushes an error code for vector v.
func HasErrorCode(v uint8) bool {
	switch v {
	case 8, 10, 11, VecSS, VecGP, VecPF, VecAC, VecCP, 29, 30:
		return true
	}
	return false
}
