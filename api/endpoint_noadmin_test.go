package api

import "testing"

// "host:port@" says the worker has no admin API (llama.cpp's rpc-server).
func TestEndpointWithoutAdmin(t *testing.T) {
	eps, err := ParseEndpoints("10.0.0.5:50052@,10.0.0.6:50052")
	if err != nil {
		t.Fatal(err)
	}
	if eps[0].Admin != "" || eps[1].Admin != "http://10.0.0.6:50053" {
		t.Fatalf("%+v", eps)
	}
}
