package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"testing"

	"github.com/boxproj/box/api"
)

// A real worker's admin answers are the api types and nothing else (no
// field api/SCHEMA.md does not document), with every field the schema does
// not mark optional (api's own test ties those to the document).
func TestAdminAnswersFollowTheSchema(t *testing.T) {
	w := startWorker(t, Config{})
	ctx := context.Background()
	c := dial(t, w.addr)
	if _, _, err := c.AllocBuffer(ctx, 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		into any // the answer, decoded strictly
		list string
		zero any // its element: what must always be there
	}{
		{"/v1/node", &api.NodeInfo{}, "", api.NodeInfo{}},
		{"/v1/node", &api.NodeInfo{}, "devices", api.DeviceInfo{}},
		{"/v1/connections", &struct{ Connections []api.ConnInfo }{}, "connections", api.ConnInfo{}},
		{"/v1/events", &struct{ Events []api.Event }{}, "events", api.Event{}},
	} {
		body := []byte(get(t, w.admin+tc.path))
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(tc.into); err != nil {
			t.Fatalf("%s: %v\n%s", tc.path, err, body)
		}
		var doc map[string]any
		json.Unmarshal(body, &doc)
		elems := []any{doc}
		if tc.list != "" {
			elems, _ = doc[tc.list].([]any)
		}
		if len(elems) == 0 {
			t.Fatalf("%s: no %s: %s", tc.path, tc.list, body)
		}
		for _, e := range elems {
			m, _ := e.(map[string]any)
			for _, k := range keys(t, tc.zero) {
				if _, ok := m[k]; !ok {
					t.Errorf("%s %s: no %q in %v", tc.path, tc.list, k, slices.Sorted(maps.Keys(m)))
				}
			}
		}
	}
}

// keys are the JSON names v marshals to.
func keys(t *testing.T, v any) []string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	json.Unmarshal(b, &m)
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
