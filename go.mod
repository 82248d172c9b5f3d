module github.com/tendervm/tender

go 1.26.8

require github.com/stretchr/testify v1.12.1

require (
	github.com/alecthomas/kong v0.8.0 // indirect
	github.com/bobuhiro11/gokvm v0.0.8-0.20231003020000-f53faca69d28 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/arch v0.2.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
