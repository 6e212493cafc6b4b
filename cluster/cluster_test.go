package cluster

import (
	"strings"
	"testing"
)

func TestParseEndpoints(t *testing.T) {
	tests := []struct {
		in      string
		want    []Endpoint
		wantErr string
	}{
		{in: "127.0.0.1:50052", want: []Endpoint{{Addr: "127.0.0.1:50052", Admin: "http://127.0.0.1:50053"}}},
		{in: " 10.0.0.5:50052 , 10.0.0.6:7000@10.0.0.6:9000 ", want: []Endpoint{
			{Addr: "10.0.0.5:50052", Admin: "http://10.0.0.5:50053"}, {Addr: "10.0.0.6:7000", Admin: "http://10.0.0.6:9000"}}},
		{in: "[::1]:50052", want: []Endpoint{{Addr: "[::1]:50052", Admin: "http://[::1]:50053"}}},
		{in: "h:65535", want: []Endpoint{{Addr: "h:65535"}}},
		{in: "", wantErr: "no workers"},
		{in: "localhost", wantErr: "want host:port"},
		{in: "h:0", wantErr: "bad port"},
		{in: "h:http", wantErr: "bad port"},
		{in: "h:1,h:1", wantErr: "twice"},
		{in: "h:1@nope", wantErr: "admin address"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseEndpoints(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %+v want %+v", got, tc.want)
				}
			}
		})
	}
}

func TestFitErrorNamesTheWorker(t *testing.T) {
	e := &FitError{Share: Share{Endpoint: Endpoint{Addr: "10.0.0.6:50052"}, Layers: 8, Weights: 3 << 30, KV: 1 << 28, Compute: 1 << 27, Need: 3<<30 + 1<<28 + 1<<27, Free: 1 << 30}}
	msg := e.Error()
	for _, want := range []string{"10.0.0.6:50052", "needs 3456.0 MiB", "8 layers", "has 1024.0 MiB free"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("%q lacks %q", msg, want)
		}
	}
}
