package rpc_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/boxproj/box/rpc"
)

// A worker's request loop: read the header, check the size before
// allocating, read the payload, decode, answer.
func ExampleDecodeRequest() {
	// Two requests as a client would send them.
	var wire bytes.Buffer
	rpc.WriteRequest(&wire, rpc.CmdHello)
	rpc.WriteRequest(&wire, rpc.CmdAllocBuffer, rpc.AllocBufferReq{Device: 0, Size: 1024}.Encode())

	var out bytes.Buffer
	for {
		cmd, size, err := rpc.ReadRequestHeader(&wire)
		if err == io.EOF {
			break
		}
		if n, exact, ok := cmd.RequestSize(); !ok || (exact && size != n) || size < n {
			fmt.Println("close: bad command or size")
			return
		}
		payload := make([]byte, size) // a real worker also caps size here
		io.ReadFull(&wire, payload)
		msg, err := rpc.DecodeRequest(cmd, payload, rpc.DefaultGraphLimits)
		if err != nil {
			pe, _ := rpc.IsProtocolError(err)
			fmt.Println("close:", pe.Kind)
			return
		}
		switch m := msg.(type) {
		case rpc.HelloReq:
			rpc.WriteResponse(&out, rpc.HelloResp{Major: rpc.ProtoMajor, Minor: rpc.ProtoMinor, Patch: rpc.ProtoPatch}.Encode())
		case rpc.AllocBufferReq:
			fmt.Printf("%v device %d size %d\n", cmd, m.Device, m.Size)
			rpc.WriteResponse(&out, rpc.AllocBufferResp{Handle: 0x1000, Size: m.Size}.Encode())
		}
	}
	fmt.Printf("% x\n", out.Bytes()[:11])
	// Output:
	// ALLOC_BUFFER device 0 size 1024
	// 03 00 00 00 00 00 00 00 03 06 00
}
