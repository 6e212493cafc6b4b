// Package deploy holds the deployment recipes (systemd units, a Kubernetes
// LeaderWorkerSet); it has no Go code, only this test, which reads the files
// as their consumers would and checks what the docs promise: every flag
// exists in the command that gets it, the head's --rpc names its group's
// workers, probes, limits, the token secret, and stop timeouts above --grace.
// systemd-analyze verify checks the units' syntax (in .ci/run).
package deploy

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxproj/box/api"
	"go.yaml.in/yaml/v3"
)

//go:embed kubernetes/*.yaml systemd/*.service systemd/*.env systemd/*.d/*.conf
var files embed.FS

// flagsOf returns the long flags that cmd/box defines in the given files
// (f.StringVar(&x, "name", ...), f.Var(v, "name", ...), ...), plus the
// global ones (backends.go).
func flagsOf(t *testing.T, names ...string) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`\.(?:String|Bool|Int|Int64|Uint|Float64|Duration)?Var\(\s*[^,]+,\s*"([a-z0-9-]+)"`)
	out := map[string]bool{"help": true}
	for _, n := range append(names, "backends.go") {
		b, err := os.ReadFile(filepath.Join("..", "cmd", "box", n))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			out[string(m[1])] = true
		}
	}
	if len(out) < 5 {
		t.Fatalf("found only %d flags in cmd/box/%v: has the way flags are defined changed?", len(out), names)
	}
	return out
}

var commandFiles = map[string][]string{"serve": {"serve.go"}, "worker": {"worker.go"}}

// checkFlags fails for every --flag in args that the subcommand lacks.
func checkFlags(t *testing.T, where, cmd string, args []string) {
	t.Helper()
	known := flagsOf(t, commandFiles[cmd]...)
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !known[name] {
			t.Errorf("%s: box %s has no flag --%s", where, cmd, name)
		}
	}
}

// flagValue is the value after --name in args ("" and false if absent).
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// ---- Kubernetes ----

// docs decodes every document of a multi-document YAML file.
func docs(t *testing.T, name string) []map[string]any {
	t.Helper()
	b, err := files.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}

// get walks a decoded document: keys for maps, ints for lists.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// container is one container of a pod template, with its environment
// resolved as the kubelet would for the given pod (fieldRefs to the pod's
// name and namespace, $(VAR) references to earlier variables).
type container struct {
	raw  map[string]any
	args []string
	env  map[string]string
}

func podContainer(t *testing.T, tmpl any, podName, ns string) container {
	t.Helper()
	cs, _ := get(tmpl, "spec", "containers").([]any)
	if len(cs) != 1 {
		t.Fatalf("want one container in the pod template, got %d", len(cs))
	}
	c := container{raw: cs[0].(map[string]any), env: map[string]string{}}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	expand := func(s string) string {
		return ref.ReplaceAllStringFunc(s, func(m string) string {
			if v, ok := c.env[m[2:len(m)-1]]; ok {
				return v
			}
			return m // the kubelet leaves unknown references as they are
		})
	}
	envs, _ := get(c.raw, "env").([]any)
	for _, e := range envs {
		name := str(get(e, "name"))
		switch fp := str(get(e, "valueFrom", "fieldRef", "fieldPath")); {
		case fp == "metadata.name":
			c.env[name] = podName
		case fp == "metadata.namespace":
			c.env[name] = ns
		case get(e, "valueFrom", "secretKeyRef") != nil:
			c.env[name] = "<secret>"
		default:
			c.env[name] = expand(str(get(e, "value")))
		}
	}
	for _, a := range get(c.raw, "args").([]any) {
		c.args = append(c.args, expand(str(a)))
	}
	return c
}

// port resolves a probe's port (a number or a named containerPort).
func (c container) port(p any) int {
	if n, ok := p.(int); ok {
		return n
	}
	ports, _ := get(c.raw, "ports").([]any)
	for _, cp := range ports {
		if str(get(cp, "name")) == str(p) {
			n, _ := get(cp, "containerPort").(int)
			return n
		}
	}
	return 0
}

func listenPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestLeaderWorkerSet(t *testing.T) {
	all := docs(t, "kubernetes/box-lws.yaml")
	var lws map[string]any
	kinds := map[string]bool{}
	for _, d := range all {
		kinds[str(d["kind"])] = true
		if d["kind"] == "LeaderWorkerSet" {
			lws = d
		}
	}
	if lws == nil {
		t.Fatal("no LeaderWorkerSet in kubernetes/box-lws.yaml")
	}
	for _, k := range []string{"Service", "NetworkPolicy"} {
		if !kinds[k] {
			t.Errorf("no %s in kubernetes/box-lws.yaml", k)
		}
	}
	if v := str(lws["apiVersion"]); v != "leaderworkerset.x-k8s.io/v1" {
		t.Errorf("apiVersion %q, want leaderworkerset.x-k8s.io/v1", v)
	}
	name := str(get(lws, "metadata", "name"))
	spec := get(lws, "spec")
	// The leader is ready only once the model is on the workers, so the
	// workers must not wait for it.
	if p := str(get(spec, "startupPolicy")); p != "" && p != "LeaderCreated" {
		t.Errorf("startupPolicy %q: the workers would wait for a leader that waits for them", p)
	}
	if p := str(get(spec, "networkConfig", "subdomainPolicy")); p != "" && p != "Shared" {
		t.Errorf("subdomainPolicy %q: the worker names below assume Shared (service %q)", p, name)
	}
	lwt := get(spec, "leaderWorkerTemplate")
	size, _ := get(lwt, "size").(int)
	if size < 2 {
		t.Fatalf("leaderWorkerTemplate.size %d: want a leader and at least one worker", size)
	}
	if p := str(get(lwt, "restartPolicy")); p != "None" && p != "RecreateGroupOnPodRestart" {
		t.Errorf("restartPolicy %q: want None or RecreateGroupOnPodRestart", p)
	}

	// Group 1 of namespace ns: leader box-1, workers box-1-1 ...
	const ns = "ns"
	leaderPod := name + "-1"
	head := podContainer(t, get(lwt, "leaderTemplate"), leaderPod, ns)
	if len(head.args) == 0 || head.args[0] != "serve" {
		t.Fatalf("leader args %v: want box serve", head.args)
	}
	checkFlags(t, "leader", "serve", head.args)
	for _, f := range []string{"no-local", "reconnect"} {
		if !slices.Contains(head.args, "--"+f) {
			t.Errorf("leader: no --%s", f)
		}
	}

	worker := podContainer(t, get(lwt, "workerTemplate"), leaderPod+"-1", ns)
	if len(worker.args) == 0 || worker.args[0] != "worker" {
		t.Fatalf("worker args %v: want box worker", worker.args)
	}
	checkFlags(t, "worker", "worker", worker.args)
	wlisten, _ := flagValue(worker.args, "listen")
	wadmin, _ := flagValue(worker.args, "admin")
	rpcPort, adminPort := listenPort(t, wlisten), listenPort(t, wadmin)
	if worker.port("rpc") != rpcPort || worker.port("admin") != adminPort {
		t.Errorf("worker containerPorts rpc %d, admin %d; it listens on %s and %s", worker.port("rpc"), worker.port("admin"), wlisten, wadmin)
	}

	// --rpc names exactly this group's workers, by their pod DNS names, on
	// the port they listen on, with the admin API where the worker has it.
	rpc, ok := flagValue(head.args, "rpc")
	if !ok {
		t.Fatal("leader: no --rpc")
	}
	// host:port[@adminhost:port], the admin API at port+1 without "@".
	eps := strings.Split(rpc, ",")
	if len(eps) != size-1 {
		t.Errorf("leader --rpc %q names %d workers; the group has %d", rpc, len(eps), size-1)
	}
	for i, ep := range eps {
		host := fmt.Sprintf("%s-%d.%s.%s", leaderPod, i+1, name, ns)
		addr, admin, hasAdmin := strings.Cut(ep, "@")
		if want := net.JoinHostPort(host, strconv.Itoa(rpcPort)); addr != want {
			t.Errorf("--rpc worker %d is %s, want %s", i+1, addr, want)
		}
		if !hasAdmin && adminPort != rpcPort+1 || hasAdmin && admin != net.JoinHostPort(host, strconv.Itoa(adminPort)) {
			t.Errorf("--rpc worker %d: its admin API is not where the head will look (%q; the worker has port %d)", i+1, ep, adminPort)
		}
	}
	// The worker accepts that name on its admin API (boxtop --head).
	hosts, _ := flagValue(worker.args, "admin-host")
	if want := fmt.Sprintf("%s-1-1.%s.%s", name, name, ns); !slices.Contains(strings.Split(hosts, ","), want) {
		t.Errorf("worker --admin-host %q lacks %s, the name the head lists", hosts, want)
	}

	// The head is ready when /health says so, on the port it listens on.
	listen, _ := flagValue(head.args, "listen")
	rp := get(head.raw, "readinessProbe", "httpGet")
	if str(get(rp, "path")) != "/health" || head.port(get(rp, "port")) != listenPort(t, listen) {
		t.Errorf("leader readinessProbe %v: want GET /health on %s", rp, listen)
	}
	if get(head.raw, "livenessProbe", "httpGet", "path") == "/health" {
		t.Error("leader livenessProbe on /health: a loading or degraded head would be killed")
	}
	if get(worker.raw, "readinessProbe") == nil {
		t.Error("worker: no readinessProbe")
	}

	// Each worker has a GPU, limited; the head none.
	gpu := str(get(worker.raw, "resources", "limits", "nvidia.com/gpu"))
	if n, _ := strconv.Atoi(gpu); n < 1 {
		t.Errorf("worker resources.limits nvidia.com/gpu %q, want >= 1", gpu)
	}
	if get(worker.raw, "resources", "limits", "memory") == nil {
		t.Error("worker: no memory limit")
	}
	if get(head.raw, "resources", "limits", "nvidia.com/gpu") != nil {
		t.Error("the head (--no-local) asks for a GPU")
	}

	// The admin token comes from a Secret.
	var tokenRef any
	for _, e := range get(worker.raw, "env").([]any) {
		if str(get(e, "name")) == api.TokenEnv {
			tokenRef = get(e, "valueFrom", "secretKeyRef")
		}
	}
	if str(get(tokenRef, "name")) == "" || str(get(tokenRef, "key")) == "" {
		t.Errorf("worker: %s is not from a Secret (secretKeyRef %v)", api.TokenEnv, tokenRef)
	}

	// The pods get longer to stop than --grace.
	for _, p := range []struct {
		who  string
		tmpl any
		args []string
	}{{"leader", get(lwt, "leaderTemplate"), head.args}, {"worker", get(lwt, "workerTemplate"), worker.args}} {
		grace := 10 * time.Second
		if g, ok := flagValue(p.args, "grace"); ok {
			grace, _ = time.ParseDuration(g)
		}
		tgp, ok := get(p.tmpl, "spec", "terminationGracePeriodSeconds").(int)
		if !ok {
			tgp = 30
		}
		if time.Duration(tgp)*time.Second <= grace {
			t.Errorf("%s: terminationGracePeriodSeconds %d is not above --grace %v", p.who, tgp, grace)
		}
	}
}

// ---- systemd ----

// unit is a unit file with its drop-ins applied, as key -> values.
type unit map[string][]string

func readUnit(t *testing.T, paths ...string) unit {
	t.Helper()
	u := unit{}
	for _, p := range paths {
		b, err := files.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		var cont string
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if cont != "" {
				line = cont + " " + line
				cont = ""
			}
			if l, ok := strings.CutSuffix(line, "\\"); ok {
				cont = l
				continue
			}
			if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q", p, line)
			}
			u[k] = append(u[k], v)
		}
	}
	return u
}

func (u unit) last(k string) string {
	if v := u[k]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// env is the unit's Environment= assignments, later ones winning.
func (u unit) envVars() map[string]string {
	out := map[string]string{}
	for _, e := range u["Environment"] {
		for _, kv := range strings.Fields(e) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				out[k] = v
			}
		}
	}
	return out
}

func TestSystemdUnits(t *testing.T) {
	units, _ := fs.Glob(files, "systemd/*.service")
	if len(units) < 3 {
		t.Fatalf("units: %v", units)
	}
	for _, p := range units {
		t.Run(filepath.Base(p), func(t *testing.T) {
			paths := []string{p}
			if strings.Contains(p, "@") {
				drop, _ := fs.Glob(files, "systemd/box-worker@0.service.d/*.conf")
				paths = append(paths, drop...)
			}
			u := readUnit(t, paths...)
			args := strings.Fields(u.last("ExecStart"))
			if len(args) < 2 || args[0] != "/usr/local/bin/box" {
				t.Fatalf("ExecStart %v: want /usr/local/bin/box CMD ...", args)
			}
			cmd := args[1]
			checkFlags(t, p, cmd, args)
			grace := 10 * time.Second
			if g, ok := flagValue(args, "grace"); ok {
				grace, _ = time.ParseDuration(g)
			}
			stop, err := time.ParseDuration(u.last("TimeoutStopSec"))
			if err != nil || stop <= grace {
				t.Errorf("TimeoutStopSec %q is not above --grace %v", u.last("TimeoutStopSec"), grace)
			}
			want := map[string]string{"KillMode": "mixed", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
				"ProtectHome": "yes", "PrivateTmp": "yes", "DynamicUser": "yes"}
			for k, v := range want {
				if u.last(k) != v {
					t.Errorf("%s=%q, want %q", k, u.last(k), v)
				}
			}
			if u.last("RestrictAddressFamilies") == "" {
				t.Error("no RestrictAddressFamilies")
			}
			if cmd == "worker" {
				if u.last("StateDirectory") != "box" || u.last("CacheDirectory") == "" {
					t.Errorf("worker: StateDirectory %q (want box: the admin token), CacheDirectory %q", u.last("StateDirectory"), u.last("CacheDirectory"))
				}
				if f, _ := flagValue(args, "admin-token-file"); f != "%S/box/admin-token" {
					t.Errorf("worker --admin-token-file %q, want %%S/box/admin-token (the state directory)", f)
				}
				if c, _ := flagValue(args, "cache"); !strings.HasPrefix(c, "%C/"+u.last("CacheDirectory")) {
					t.Errorf("worker --cache %q is not in CacheDirectory %q", c, u.last("CacheDirectory"))
				}
			}
			if strings.Contains(p, "@") {
				allow := strings.Join(u["DeviceAllow"], " ")
				for _, d := range []string{"nvidia", "drm"} {
					if !strings.Contains(allow, d) {
						t.Errorf("GPU worker: DeviceAllow %q lacks %s", allow, d)
					}
				}
				if u.last("DevicePolicy") != "closed" || u.last("PrivateDevices") == "yes" {
					t.Errorf("GPU worker: DevicePolicy %q, PrivateDevices %q", u.last("DevicePolicy"), u.last("PrivateDevices"))
				}
			}
		})
	}
}

// TestGPUDropIns: drop-in N pins GPU N to consecutive ports, 50052+2N and
// the admin API on the next one (what the head assumes for --rpc HOST:PORT).
func TestGPUDropIns(t *testing.T) {
	drops, _ := fs.Glob(files, "systemd/box-worker@*.service.d/*.conf")
	if len(drops) < 2 {
		t.Fatalf("drop-ins: %v", drops)
	}
	for _, p := range drops {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Dir(p), "systemd/box-worker@"), ".service.d"))
		if err != nil {
			t.Fatalf("%s: instance is not a GPU index", p)
		}
		env := readUnit(t, p).envVars()
		if env["CUDA_VISIBLE_DEVICES"] != strconv.Itoa(n) {
			t.Errorf("%s: CUDA_VISIBLE_DEVICES=%q", p, env["CUDA_VISIBLE_DEVICES"])
		}
		rpc, admin := listenPort(t, env["BOX_LISTEN"]), listenPort(t, env["BOX_ADMIN"])
		if rpc != 50052+2*n || admin != rpc+1 {
			t.Errorf("%s: ports %d and %d, want %d and %d", p, rpc, admin, 50052+2*n, 50053+2*n)
		}
	}
}

// TestExampleArgs: the flags the env files and drop-ins suggest (commented
// out or not) exist.
func TestExampleArgs(t *testing.T) {
	paths, _ := fs.Glob(files, "systemd/*.env")
	drops, _ := fs.Glob(files, "systemd/*.d/*.conf")
	re := regexp.MustCompile(`BOX_(SERVE|WORKER|GPU)_ARGS=(.*)`)
	seen := 0
	for _, p := range append(paths, drops...) {
		b, _ := files.ReadFile(p)
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			cmd := "worker"
			if m[1] == "SERVE" {
				cmd = "serve"
			}
			checkFlags(t, p, cmd, strings.Fields(m[2]))
			seen++
		}
	}
	if seen == 0 {
		t.Error("no BOX_*_ARGS examples found")
	}
}
