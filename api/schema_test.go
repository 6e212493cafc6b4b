package api

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// schemaTypes are the types SCHEMA.md documents, by their section name.
var schemaTypes = map[string]any{
	"NodeInfo": NodeInfo{}, "DeviceInfo": DeviceInfo{}, "ConnInfo": ConnInfo{}, "BufferInfo": BufferInfo{},
	"Event": Event{}, "ClusterView": ClusterView{}, "ClusterWorker": ClusterWorker{}, "PlanShare": PlanShare{},
}

// docField is one row of a SCHEMA.md table.
type docField struct {
	name     string
	optional bool
}

// schemaDoc reads SCHEMA.md's "### Type" sections and their field rows.
func schemaDoc(t *testing.T) map[string][]docField {
	t.Helper()
	b, err := os.ReadFile("SCHEMA.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([a-z_]+)` \\| [^|]+ \\| (.*)\\|$")
	out := map[string][]docField{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(line, "### "); ok {
			section = s
			continue
		}
		if strings.HasPrefix(line, "## ") {
			section = ""
		}
		if m := row.FindStringSubmatch(line); m != nil && section != "" {
			out[section] = append(out[section], docField{m[1], strings.HasPrefix(strings.TrimSpace(m[2]), "*optional*")})
		}
	}
	return out
}

// jsonFields are a struct type's JSON names, embedded structs flattened,
// with whether each is omitted when empty.
func jsonFields(t reflect.Type) []docField {
	var out []docField
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		out = append(out, docField{name, strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")})
	}
	return out
}

// fill sets every field of v (a pointer) to a value that is not empty, so
// that every field, optional ones too, is marshalled.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2026, 11, 27, 20, 50, 0, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		v.SetUint(1)
	case reflect.Float64:
		v.SetFloat(1.5)
	}
}

// SCHEMA.md lists exactly the fields of every type, optional exactly where
// the field is omitted when empty, and every field is produced: a value
// with every field set marshals to exactly the documented names, and the
// zero value to exactly the fields not marked optional.
func TestSchemaDocumentsEveryField(t *testing.T) {
	doc := schemaDoc(t)
	var sections []string
	for s := range doc {
		sections = append(sections, s)
	}
	sort.Strings(sections)
	var want []string
	for s := range schemaTypes {
		want = append(want, s)
	}
	sort.Strings(want)
	if !slices.Equal(sections, want) {
		t.Fatalf("SCHEMA.md documents %v, the types are %v", sections, want)
	}
	for name, zero := range schemaTypes {
		typ := reflect.TypeOf(zero)
		if got := jsonFields(typ); !reflect.DeepEqual(got, doc[name]) {
			t.Errorf("%s: SCHEMA.md lists %v, the type has %v", name, doc[name], got)
		}
		var all, required []string
		for _, f := range doc[name] {
			all = append(all, f.name)
			if !f.optional {
				required = append(required, f.name)
			}
		}
		sort.Strings(all)
		sort.Strings(required)
		full := reflect.New(typ)
		fill(full.Elem())
		if got := marshalledKeys(t, full.Interface()); !slices.Equal(got, all) {
			t.Errorf("%s with every field set marshals %v, SCHEMA.md lists %v", name, got, all)
		}
		if got := marshalledKeys(t, zero); !slices.Equal(got, required) {
			t.Errorf("%s, empty, marshals %v; the fields not optional are %v", name, got, required)
		}
	}
}

func marshalledKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
