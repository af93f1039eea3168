package monitorapi

//go:generate protoc -I. --go_out=. --go_opt=paths=source_relative --go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative monitor.proto
