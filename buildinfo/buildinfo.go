// Package buildinfo says what a box binary is: its version and commit, the
// Go it was built with, the llama.cpp it embeds and the RPC protocols it
// speaks (box version, boxtop --version).
package buildinfo

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/boxproj/box/rpc"
)

// LlamaCpp is the llama.cpp commit that the ollama module vendors (its
// llama/build-info.cpp says so; a test checks the two agree).
const LlamaCpp, OllamaModule = "ec98e2002", "github.com/ollama/ollama"

// Info is box version --json.
type Info struct {
	Version   string   `json:"version"`
	Commit    string   `json:"commit"`
	Modified  bool     `json:"modified"`
	Go        string   `json:"go"`
	Platform  string   `json:"platform"`
	LlamaCpp  string   `json:"llama_cpp"`
	Ollama    string   `json:"ollama_module"`
	Protocols []string `json:"rpc_protocols"`
	// Ops is the number of ops in the embedded ggml's op enum: the
	// protocol does not check it, so a worker and a head must agree on
	// names (box translates them, docs/protocol.md).
	Ops int `json:"ggml_ops"`
}

// Read fills Info. version and commit are what the linker was given (-X);
// where they are empty or "dev", the module version and the VCS stamp of
// the Go build info stand in.
func Read(version, commit string) Info {
	v := Info{Version: version, Commit: commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
		LlamaCpp: LlamaCpp, Protocols: rpc.SupportedVersions(), Ops: rpc.EmbeddedOps.Count()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if (v.Version == "" || v.Version == "dev") && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && v.Commit == "":
				v.Commit = s.Value
			case s.Key == "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
		for _, d := range bi.Deps {
			if d.Path == OllamaModule {
				v.Ollama = d.Version
			}
		}
	}
	if v.Version == "" {
		v.Version = "dev"
	}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	return v
}

// Format is String, or indented JSON with a newline (box version --json).
func (v Info) Format(asJSON bool) string {
	if !asJSON {
		return v.String()
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b) + "\n"
}

func (v Info) String() string {
	commit := v.Commit
	if v.Modified {
		commit += " (modified)"
	}
	return fmt.Sprintf("box %s\n  commit     %s\n  go         %s %s\n  llama.cpp  %s (%s %s), %d ggml ops\n  rpc        ggml RPC %s\n",
		v.Version, commit, v.Go, v.Platform, v.LlamaCpp, OllamaModule, v.Ollama, v.Ops, strings.Join(v.Protocols, ", "))
}
