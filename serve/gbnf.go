package serve

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// JSON Schema to GBNF (llama.cpp's grammar format), for response_format.
// The grammar is tight on purpose: whitespace is at most one space, numbers
// have bounded digits, so that even a model that produces noise finishes a
// document of bounded length. The subset supported: type (one or a list),
// properties and required (properties in their order; the rest are
// refused), items with minItems and maxItems, enum, const, anyOf and oneOf,
// and minLength and maxLength on strings. Any other keyword is refused with
// an error naming it, never ignored. Annotations (title, description,
// examples, default, $schema, $id) are accepted.

// jsonGrammar is any JSON value (response_format json_object asks for an
// object at the top).
const jsonGrammar = "root ::= object\n" + valueRules + primitiveRules

const valueRules = `value ::= object | array | string | number | boolean | null
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array ::= "[" ws ( value ("," ws value)* )? "]" ws
`

const primitiveRules = `string ::= "\"" char* "\"" ws
char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
number ::= integer ("." [0-9]{1,15})? ([eE] [-+]? [0-9]{1,3})? ws
integer ::= "-"? ([0-9] | [1-9] [0-9]{0,15}) ws
boolean ::= ("true" | "false") ws
null ::= "null" ws
ws ::= | " "
`

var schemaAnnotations = map[string]bool{
	"title": true, "description": true, "examples": true, "default": true, "$schema": true, "$id": true,
	"$comment": true, "strict": true,
}

type gbnfBuilder struct {
	rules []string
	n     int
}

// schemaToGBNF converts a JSON schema to a grammar whose root is the schema.
func schemaToGBNF(schema json.RawMessage) (string, error) {
	var b gbnfBuilder
	root, err := b.node(schema, "schema")
	if err != nil {
		return "", err
	}
	return "root ::= " + root + "\n" + strings.Join(b.rules, "") + primitiveRules, nil
}

func (b *gbnfBuilder) rule(body string) string {
	b.n++
	name := "r" + strconv.Itoa(b.n)
	b.rules = append(b.rules, name+" ::= "+body+"\n")
	return name
}

// literal is a GBNF string literal matching the JSON encoding of v.
func literal(v any) (string, error) {
	enc, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return strconv.Quote(string(enc)) + " ws", nil
}

func (b *gbnfBuilder) node(raw json.RawMessage, path string) (string, error) {
	var s map[string]json.RawMessage
	if err := json.Unmarshal(raw, &s); err != nil {
		var yes bool
		if json.Unmarshal(raw, &yes) == nil && yes {
			return "value", b.needValue()
		}
		return "", fmt.Errorf("%s: a schema must be an object", path)
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	known := map[string]bool{"type": true, "properties": true, "required": true, "additionalProperties": true,
		"items": true, "minItems": true, "maxItems": true, "enum": true, "const": true, "anyOf": true, "oneOf": true,
		"minLength": true, "maxLength": true}
	for _, k := range keys {
		if !known[k] && !schemaAnnotations[k] {
			return "", fmt.Errorf("%s: keyword %q is not supported", path, k)
		}
	}
	if c, ok := s["const"]; ok {
		var v any
		json.Unmarshal(c, &v)
		return literal(v)
	}
	if e, ok := s["enum"]; ok {
		var vals []any
		if err := json.Unmarshal(e, &vals); err != nil || len(vals) == 0 {
			return "", fmt.Errorf("%s: enum must be a non-empty array", path)
		}
		var alts []string
		for _, v := range vals {
			l, err := literal(v)
			if err != nil {
				return "", err
			}
			alts = append(alts, l)
		}
		return b.rule(strings.Join(alts, " | ")), nil
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if a, ok := s[k]; ok {
			var subs []json.RawMessage
			if err := json.Unmarshal(a, &subs); err != nil || len(subs) == 0 {
				return "", fmt.Errorf("%s: %s must be a non-empty array", path, k)
			}
			var alts []string
			for i, sub := range subs {
				r, err := b.node(sub, fmt.Sprintf("%s.%s[%d]", path, k, i))
				if err != nil {
					return "", err
				}
				alts = append(alts, r)
			}
			return b.rule(strings.Join(alts, " | ")), nil
		}
	}
	var types []string
	if t, ok := s["type"]; ok {
		var one string
		if json.Unmarshal(t, &one) == nil {
			types = []string{one}
		} else if json.Unmarshal(t, &types) != nil || len(types) == 0 {
			return "", fmt.Errorf("%s: type must be a string or an array of strings", path)
		}
	} else {
		return "value", b.needValue()
	}
	var alts []string
	for _, t := range types {
		r, err := b.typed(t, s, path)
		if err != nil {
			return "", err
		}
		alts = append(alts, r)
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return b.rule(strings.Join(alts, " | ")), nil
}

func (b *gbnfBuilder) typed(t string, s map[string]json.RawMessage, path string) (string, error) {
	intOf := func(k string) (int, bool, error) {
		raw, ok := s[k]
		if !ok {
			return 0, false, nil
		}
		var n int
		if err := json.Unmarshal(raw, &n); err != nil || n < 0 || n > 1000 {
			return 0, false, fmt.Errorf("%s: %s must be an integer from 0 to 1000", path, k)
		}
		return n, true, nil
	}
	switch t {
	case "string":
		lo, _, err := intOf("minLength")
		if err != nil {
			return "", err
		}
		hi, hasHi, err := intOf("maxLength")
		if err != nil {
			return "", err
		}
		if !hasHi && lo == 0 {
			return "string", nil
		}
		rep := fmt.Sprintf("{%d,}", lo)
		if hasHi {
			rep = fmt.Sprintf("{%d,%d}", lo, hi)
		}
		return b.rule(`"\"" char` + rep + ` "\"" ws`), nil
	case "integer", "number", "boolean", "null":
		return t, nil
	case "array":
		item := "value"
		if it, ok := s["items"]; ok {
			r, err := b.node(it, path+".items")
			if err != nil {
				return "", err
			}
			item = r
		} else if err := b.needValue(); err != nil {
			return "", err
		}
		lo, _, err := intOf("minItems")
		if err != nil {
			return "", err
		}
		hi, hasHi, err := intOf("maxItems")
		if err != nil {
			return "", err
		}
		if hasHi && hi < lo {
			return "", fmt.Errorf("%s: maxItems is below minItems", path)
		}
		var body string
		switch {
		case hasHi && hi == 0:
			body = `"[" ws "]" ws`
		case lo == 0 && !hasHi:
			body = `"[" ws (` + item + ` ("," ws ` + item + `)*)? "]" ws`
		default:
			rest := fmt.Sprintf("{%d,}", max(lo-1, 0))
			if hasHi {
				rest = fmt.Sprintf("{%d,%d}", max(lo-1, 0), hi-1)
			}
			body = `"[" ws ` + item + ` ("," ws ` + item + `)` + rest + ` "]" ws`
			if lo == 0 {
				body = `"[" ws "]" ws | ` + body
			}
		}
		return b.rule(body), nil
	case "object":
		if ap, ok := s["additionalProperties"]; ok {
			var yes bool
			if json.Unmarshal(ap, &yes) != nil || yes {
				return "", fmt.Errorf("%s: additionalProperties other than false is not supported", path)
			}
		}
		var order []string
		props := map[string]json.RawMessage{}
		if p, ok := s["properties"]; ok {
			// Properties keep the order they are written in.
			dec := json.NewDecoder(strings.NewReader(string(p)))
			if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
				return "", fmt.Errorf("%s: properties must be an object", path)
			}
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return "", fmt.Errorf("%s: properties: %v", path, err)
				}
				var sub json.RawMessage
				if err := dec.Decode(&sub); err != nil {
					return "", fmt.Errorf("%s: properties: %v", path, err)
				}
				name := tok.(string)
				order = append(order, name)
				props[name] = sub
			}
		}
		required := map[string]bool{}
		if r, ok := s["required"]; ok {
			var names []string
			if err := json.Unmarshal(r, &names); err != nil {
				return "", fmt.Errorf("%s: required must be an array of strings", path)
			}
			for _, n := range names {
				if _, ok := props[n]; !ok {
					return "", fmt.Errorf("%s: required property %q is not in properties", path, n)
				}
				required[n] = true
			}
		}
		if len(order) == 0 {
			return b.rule(`"{" ws "}" ws`), nil
		}
		// Required properties in order; an optional one may be left out.
		// The first property present carries no comma.
		var kvs []string
		for _, name := range order {
			r, err := b.node(props[name], path+".properties."+name)
			if err != nil {
				return "", err
			}
			key, _ := literal(name)
			kvs = append(kvs, b.rule(key+` ":" ws `+r))
		}
		// tail(i): what may follow once a property before i was written.
		tail := make([]string, len(order)+1)
		tail[len(order)] = `"}" ws`
		for i := len(order) - 1; i >= 0; i-- {
			with := `"," ws ` + kvs[i] + " " + tail[i+1]
			if required[order[i]] {
				tail[i] = b.rule(with)
			} else {
				tail[i] = b.rule(with + " | " + tail[i+1])
			}
		}
		// head(i): no property written yet, starting at i.
		head := `"}" ws`
		for i := len(order) - 1; i >= 0; i-- {
			with := kvs[i] + " " + tail[i+1]
			if required[order[i]] {
				head = b.rule(with)
			} else {
				head = b.rule(with + " | " + head)
			}
		}
		return b.rule(`"{" ws ` + head), nil
	default:
		return "", fmt.Errorf("%s: type %q is not supported", path, t)
	}
}

// needValue adds the rules for any JSON value, once.
func (b *gbnfBuilder) needValue() error {
	for _, r := range b.rules {
		if strings.HasPrefix(r, "value ::=") {
			return nil
		}
	}
	b.rules = append(b.rules, valueRules)
	return nil
}
