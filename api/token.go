// Package api holds what box's servers and clients share about their HTTP
// APIs; it is pure Go. This file: the admin token, which every box worker's
// admin API requires, and which boxtop, box probe, box leakcheck and the
// head find the same way.
package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenEnv names the environment variable that carries the admin token
// (for CI and containers, where a file is awkward).
const TokenEnv = "BOX_ADMIN_TOKEN"

// HeadKeyEnv names the environment variable from which box chat and
// boxtop --head take the head's API key (box serve --api-key) when no
// --api-key is given: a flag's value is visible to every user in ps.
const HeadKeyEnv = "BOX_API_KEY"

// StateDirEnv overrides where box keeps its state (the admin token).
const StateDirEnv = "BOX_STATE_DIR"

// StateDir is where box keeps state: $BOX_STATE_DIR, else /var/lib/box for
// root, else $XDG_STATE_HOME/box or ~/.local/state/box.
func StateDir() string {
	if d := os.Getenv(StateDirEnv); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/box"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "box")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "box")
	}
	return filepath.Join(os.TempDir(), "box-state")
}

// DefaultTokenFile is StateDir()/admin-token.
func DefaultTokenFile() string { return filepath.Join(StateDir(), "admin-token") }

// ServerToken is the token a worker requires: flag if given, else
// $BOX_ADMIN_TOKEN, else the contents of file, which is created (mode 0600,
// 32 random bytes in hex) when it does not exist. created says so.
func ServerToken(flag, file string) (token string, created bool, err error) {
	if t := firstSet(flag, os.Getenv(TokenEnv)); t != "" {
		return t, false, nil
	}
	if t, err := readToken(file); err == nil {
		return t, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	token = hex.EncodeToString(b[:])
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another worker made it first: use theirs.
		t, err := readToken(file)
		return t, false, err
	}
	if err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	_, werr := f.WriteString(token + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(file)
		return "", false, fmt.Errorf("admin token %s: %w", file, werr)
	}
	return token, true, nil
}

// ClientToken is the token a client sends: flag if given, else
// $BOX_ADMIN_TOKEN, else the contents of file if it exists, else "" (the
// worker may leave reads open, or the request is refused with a hint).
func ClientToken(flag, file string) (string, error) {
	if t := firstSet(flag, os.Getenv(TokenEnv)); t != "" {
		return t, nil
	}
	t, err := readToken(file)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return "", nil
	}
	return t, err
}

func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("admin token file %s is empty", file)
	}
	return t, nil
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}
