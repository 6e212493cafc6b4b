package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

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
		preset, out, typ, name string
		seed                   uint64
	)
	cfg, _ := synth.Preset("tiny")
	ints := map[string]*int{"layers": &cfg.Layers, "embd": &cfg.Embd, "heads": &cfg.Heads, "kv-heads": &cfg.KVHeads,
		"ff": &cfg.FF, "ctx": &cfg.Ctx, "vocab": &cfg.Vocab}
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
	f.StringVar(&typ, "type", "", "weight type: f32, f16 or q8_0 (default: the preset's)")
	f.Uint64Var(&seed, "seed", 0, "random seed (default: the preset's)")
	f.StringVar(&name, "name", "", "general.name (default: the preset's)")
	vals := map[string]*int{}
	for _, fl := range [][2]string{{"layers", "transformer blocks"}, {"embd", "embedding width"}, {"heads", "attention heads"},
		{"kv-heads", "key/value heads"}, {"ff", "feed-forward width"}, {"ctx", "context length"}, {"vocab", "vocabulary size"}} {
		vals[fl[0]] = f.Int(fl[0], 0, fl[1]+" (default: the preset's)")
	}
	c.RunE = func(c *cobra.Command, _ []string) error {
		if out == "" {
			return usagef("-o FILE is required")
		}
		var err error
		if cfg, err = synth.Preset(preset); err != nil {
			return usageError{err}
		}
		for n, p := range ints {
			if f.Changed(n) {
				*p = *vals[n]
			}
		}
		if f.Changed("type") {
			cfg.Type = strings.ToLower(typ)
		}
		if f.Changed("seed") {
			cfg.Seed = seed
		}
		if f.Changed("name") {
			cfg.Name = name
		}
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
