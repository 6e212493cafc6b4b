package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/boxproj/box/synth"
)

const modelUsage = `usage: box model synth --preset tiny|1b -o FILE [flags]

Writes a synthetic llama-architecture GGUF model with seeded random weights.
Flags given explicitly override the preset.
`

// runModel implements "box model ...". args excludes "model" itself.
func runModel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, modelUsage)
		return errors.New("model: missing subcommand (want: synth)")
	}
	switch args[0] {
	case "synth":
		return runModelSynth(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, modelUsage)
		return nil
	}
	return fmt.Errorf("model: unknown subcommand %q (want: synth)", args[0])
}

func runModelSynth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("box model synth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), modelUsage, "\nflags:\n")
		fs.PrintDefaults()
	}
	var (
		preset = fs.String("preset", "tiny", "base configuration: "+strings.Join(synth.Presets(), ", "))
		out    = fs.String("o", "", "output `FILE` (required)")
		typ    = fs.String("type", "", "weight type: f32, f16 or q8_0 (default: the preset's)")
		seed   = fs.Uint64("seed", 0, "random seed (default: the preset's)")
		name   = fs.String("name", "", "general.name (default: the preset's)")
		ints   = map[string]*int{}
	)
	for _, f := range []struct{ name, usage string }{
		{"layers", "transformer blocks"},
		{"embd", "embedding width"},
		{"heads", "attention heads"},
		{"kv-heads", "key/value heads"},
		{"ff", "feed-forward width"},
		{"ctx", "context length"},
		{"vocab", "vocabulary size"},
	} {
		ints[f.name] = fs.Int(f.name, 0, f.usage+" (default: the preset's)")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("model synth: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("model synth: unexpected arguments %q", fs.Args())
	}
	if *out == "" {
		return errors.New("model synth: -o FILE is required")
	}
	cfg, err := synth.Preset(*preset)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fields := map[string]*int{
		"layers": &cfg.Layers, "embd": &cfg.Embd, "heads": &cfg.Heads, "kv-heads": &cfg.KVHeads,
		"ff": &cfg.FF, "ctx": &cfg.Ctx, "vocab": &cfg.Vocab,
	}
	for n, p := range fields {
		if set[n] {
			*p = *ints[n]
		}
	}
	if set["type"] {
		cfg.Type = strings.ToLower(*typ)
	}
	if set["seed"] {
		cfg.Seed = *seed
	}
	if set["name"] {
		cfg.Name = *name
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	start := time.Now()
	if err := synth.Write(ctx, *out, cfg); err != nil {
		return err // already names the path
	}
	secs := time.Since(start).Seconds()
	st, err := os.Stat(*out)
	if err != nil {
		return fmt.Errorf("model synth: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %s, %.2fM params, %s, %d layers, vocab %d, in %.2fs\n",
		*out, humanBytes(st.Size()), float64(synth.ParamCount(cfg))/1e6, cfg.Type, cfg.Layers, cfg.Vocab, secs)
	return nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
