package monitor

import (
	"errors"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/blockdev"
	"github.com/tendervm/tender/monitor/loader"
	"github.com/tendervm/tender/monitor/vcpu"
)

// BlockStats counts one block device's traffic during a run.
type BlockStats struct {
	// Name is the device's name in the guest's manifest.
	Name string
	// Reads and BytesRead count the completed block_read calls.
	Reads, BytesRead uint64
	// Writes and BytesWritten count the completed block_write calls.
	Writes, BytesWritten uint64
	// Errors counts reads and writes the host file failed or cut short
	// (the guest got ResultIO); a failed write's blocks may be partly
	// written.
	Errors uint64
}

// blockState is the block side of a VM whose guest declares block devices.
type blockState struct {
	devs []*blockdev.Device // in manifest order among block devices
	// index maps a handle (a manifest index) to its entry in devs, -1
	// for a device of another kind.
	index []int
}

// blockDevices matches the guest's device manifest with the attached block
// devices (matchDevices).
func blockDevices(declared []loader.Device, attached map[string]*blockdev.Device) (*blockState, error) {
	m, err := matchDevices(declared, hypercall.DeviceBlock, attached, "block", "-block")
	if err != nil || len(m) == 0 {
		return nil, err
	}
	bs := &blockState{index: handleIndex(len(declared), m)}
	for _, d := range m {
		bs.devs = append(bs.devs, d.dev)
	}
	return bs, nil
}

// register adds the block hypercalls to a VM's table.
func (bs *blockState) register(t *table) {
	t[hypercall.NrBlockInfo] = (*run).blockInfo
	t[hypercall.NrBlockRead] = (*run).blockRead
	t[hypercall.NrBlockWrite] = (*run).blockWrite
}

// begin sets up a run's statistics.
func (bs *blockState) begin(r *run) {
	r.stats.Block = make([]BlockStats, len(bs.devs))
	for i, d := range bs.devs {
		r.stats.Block[i].Name = d.Name()
	}
}

// blockDevice returns the block device with handle h and its statistics,
// or nil.
func (r *run) blockDevice(h uint64) (*blockdev.Device, *BlockStats) {
	bs := r.vm.block
	if h >= uint64(len(bs.index)) || bs.index[h] < 0 {
		return nil, nil
	}
	i := bs.index[h]
	return bs.devs[i], &r.stats.Block[i]
}

func (r *run) blockInfo(arg uint64) (outcome, error) {
	var bi hypercall.BlockInfo
	a, err := readArgs(r, hypercall.NrBlockInfo, arg, &bi)
	if err != nil {
		return 0, err
	}
	defer writeArgs(a, &bi)
	d, _ := r.blockDevice(bi.Handle)
	if d == nil {
		bi.Result, bi.Capacity, bi.BlockSize, bi.Flags = hypercall.ResultInvalid, 0, 0, 0
		return resume, nil
	}
	bi.Result, bi.Capacity, bi.BlockSize, bi.Flags = hypercall.ResultOK, d.Capacity(), d.BlockSize(), 0
	if d.ReadOnly() {
		bi.Flags = hypercall.BlockReadOnly
	}
	return resume, nil
}

func (r *run) blockRead(arg uint64) (outcome, error) {
	return r.blockIO(hypercall.NrBlockRead, arg)
}

func (r *run) blockWrite(arg uint64) (outcome, error) {
	return r.blockIO(hypercall.NrBlockWrite, arg)
}

// blockIO serves block_read and block_write. The request is checked
// against the device before the buffer, as net_write checks a frame's
// length first: a request the device refuses is an ordinary result, a
// buffer outside the guest's memory a protocol error.
func (r *run) blockIO(nr uint32, arg uint64) (outcome, error) {
	var req hypercall.BlockIO
	a, err := readArgs(r, nr, arg, &req)
	if err != nil {
		return 0, err
	}
	write := nr == hypercall.NrBlockWrite
	d, st := r.blockDevice(req.Handle)
	switch {
	case d == nil:
		req.Result = hypercall.ResultInvalid
	case req.Len > hypercall.BlockIOMax:
		req.Result = hypercall.ResultTooLarge
	default:
		if err := d.Check(write, req.Offset, req.Len); err != nil {
			req.Result = blockResult(err)
			break
		}
		need := vcpu.Write // the monitor fills the buffer
		if write {
			need = vcpu.Read
		}
		buf, err := r.buffer(nr, "buffer", req.Data, req.Len, need)
		if err != nil {
			return 0, err
		}
		req.Result = blockTransfer(d, st, write, buf, req.Offset)
	}
	writeArgs(a, &req)
	return resume, nil
}

// blockTransfer reads or writes buf at off and counts the outcome.
func blockTransfer(d *blockdev.Device, st *BlockStats, write bool, buf []byte, off uint64) uint64 {
	var err error
	if write {
		err = d.WriteAt(buf, off)
	} else {
		err = d.ReadAt(buf, off)
	}
	switch res := blockResult(err); {
	case res == hypercall.ResultIO:
		st.Errors++
		return res
	case res != hypercall.ResultOK:
		return res
	}
	if write {
		st.Writes++
		st.BytesWritten += uint64(len(buf))
	} else {
		st.Reads++
		st.BytesRead += uint64(len(buf))
	}
	return hypercall.ResultOK
}

// blockResult is the guest's result for a device error.
func blockResult(err error) uint64 {
	switch {
	case err == nil:
		return hypercall.ResultOK
	case errors.Is(err, blockdev.ErrAlign), errors.Is(err, blockdev.ErrRange):
		return hypercall.ResultInvalid
	case errors.Is(err, blockdev.ErrReadOnly):
		return hypercall.ResultReadOnly
	}
	return hypercall.ResultIO
}
