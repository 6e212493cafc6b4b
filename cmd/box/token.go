package main

import (
	"github.com/spf13/pflag"

	"github.com/boxproj/box/api"
)

// adminTokenFlags adds --admin-token and --admin-token-file to a client
// command; token() then finds the token as every box client does (the flag,
// $BOX_ADMIN_TOKEN, the file a local worker made).
func adminTokenFlags(f *pflag.FlagSet) (token func() (string, error)) {
	var flag, file string
	f.StringVar(&flag, "admin-token", "", "the workers' admin token (default: $"+api.TokenEnv+", else --admin-token-file)")
	f.StringVar(&file, "admin-token-file", api.DefaultTokenFile(), "file holding the workers' admin token")
	return func() (string, error) { return api.ClientToken(flag, file) }
}
