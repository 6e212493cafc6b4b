package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/synth"
)

func newModel() *cobra.Command {
	c := &cobra.Command{
		Use:     "model COMMAND",
		Short:   "Make GGUF models (synth: random weights, no download)",
		Example: "  box model synth --preset tiny -o tiny.gguf",
	}
	c.AddCommand(newModelSynth())
	return c
}

func newModelSynth() *cobra.Command {
	var (
		preset, out string
		cfg         synth.Config
	)
	c := &cobra.Command{
		Use:   "synth --preset tiny|1b -o FILE [flags]",
		Short: "Write a synthetic llama-architecture GGUF model with seeded random weights",
		Long: "Writes a llama-architecture GGUF v3 model with seeded random weights (F32, F16 or Q8_0), a byte-level\n" +
			"vocabulary and a ChatML template. Flags given explicitly override the preset.",
		Example: "  box model synth --preset tiny -o tiny.gguf\n  box model synth --preset 1b --type q8_0 -o 1b.gguf\n" +
			"  box model synth --preset 1b --layers 4 --type f16 --seed 7 -o small.gguf",
		Args: noArgs,
	}
	f := c.Flags()
	f.StringVar(&preset, "preset", "tiny", "base configuration: "+strings.Join(synth.Presets(), ", "))
	f.StringVarP(&out, "output", "o", "", "output `FILE` (required)")
	f.StringVar(&cfg.Type, "type", "", "weight type: f32, f16 or q8_0 (default: the preset's)")
	f.Uint64Var(&cfg.Seed, "seed", 0, "random seed (default: the preset's)")
	f.StringVar(&cfg.Name, "name", "", "general.name (default: the preset's)")
	for _, fl := range []struct {
		p           *int
		name, usage string
	}{{&cfg.Layers, "layers", "transformer blocks"}, {&cfg.Embd, "embd", "embedding width"}, {&cfg.Heads, "heads", "attention heads"},
		{&cfg.KVHeads, "kv-heads", "key/value heads"}, {&cfg.FF, "ff", "feed-forward width"}, {&cfg.Ctx, "ctx", "context length"},
		{&cfg.Vocab, "vocab", "vocabulary size"}} {
		f.IntVar(fl.p, fl.name, 0, fl.usage+" (default: the preset's)")
	}
	c.RunE = func(c *cobra.Command, _ []string) error {
		if out == "" {
			return usagef("-o FILE is required")
		}
		// The preset, then the flags given on top of it.
		given := map[*pflag.Flag]string{}
		f.Visit(func(fl *pflag.Flag) { given[fl] = fl.Value.String() })
		var err error
		if cfg, err = synth.Preset(preset); err != nil {
			return usageError{err}
		}
		for fl, v := range given {
			fl.Value.Set(v)
		}
		cfg.Type = strings.ToLower(cfg.Type)
		if err := cfg.Validate(); err != nil {
			return usageError{err}
		}
		start := time.Now()
		if err := synth.Write(c.Context(), out, cfg); err != nil {
			return err // already names the path
		}
		st, err := os.Stat(out)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "wrote %s: %s, %.2fM params, %s, %d layers, vocab %d, in %.2fs\n", out, probe.HumanBytes(uint64(st.Size())),
			float64(synth.ParamCount(cfg))/1e6, cfg.Type, cfg.Layers, cfg.Vocab, time.Since(start).Seconds())
		return nil
	}
	return c
}
