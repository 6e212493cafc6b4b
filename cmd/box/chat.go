package main

import (
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/chat"
)

func newChat() *cobra.Command {
	var (
		r           chat.Request
		temperature float64
		verbose     bool
	)
	c := &cobra.Command{
		Use:   "chat [flags] [MESSAGE... | -]",
		Short: "Ask a running server and stream the answer",
		Long: "Sends one chat request to a box serve (or any OpenAI-compatible server) and streams the answer to\n" +
			"stdout. The message is the arguments, or stdin when there are none or the only one is \"-\".",
		Example: "  box chat \"Say hello to box.\"\n  box chat hello --url http://10.0.0.5:8080 --system \"Answer in French.\" --temperature 0.2\n" +
			"  echo \"Summarise this\" | box chat -v --max-tokens 128",
		Args: cobra.ArbitraryArgs,
	}
	f := c.Flags()
	f.StringVar(&r.URL, "url", "http://127.0.0.1:8080", "server base URL")
	f.StringVar(&r.Model, "model", "", "model id (default: the server's first model)")
	f.StringVar(&r.System, "system", "", "a system message sent before the prompt")
	f.IntVar(&r.MaxTokens, "max-tokens", 64, "tokens to generate at most")
	f.Float64Var(&temperature, "temperature", 0, "sampling temperature, 0 for greedy (default: the server's)")
	f.DurationVar(&r.Wait, "wait", 0, "wait this long for the server to become healthy")
	f.StringVar(&r.APIKey, "api-key", os.Getenv(api.HeadKeyEnv), "the server's API key (box serve --api-key; default: $"+api.HeadKeyEnv+")")
	f.BoolVarP(&verbose, "verbose", "v", false, "print tokens, tokens/s and time to first token to stderr at the end")
	c.RunE = func(c *cobra.Command, args []string) error {
		if r.MaxTokens < 1 {
			return usagef("--max-tokens must be positive")
		}
		var err error
		if r.Prompt, err = chat.ReadPrompt(args, c.InOrStdin()); err != nil {
			return err
		} else if r.Prompt == "" {
			return usagef("give a MESSAGE, or the prompt on stdin")
		}
		if f.Changed("temperature") {
			r.Temperature = &temperature
		}
		st, err := chat.Stream(c.Context(), http.DefaultClient, r, c.OutOrStdout())
		if verbose && err == nil {
			fmt.Fprintln(c.ErrOrStderr(), st)
		}
		return err
	}
	return c
}
