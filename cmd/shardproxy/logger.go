package main

import (
	"log/slog"
	"os"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// newLogger returns a logger writing to stderr in cfg.LogFormat at
// cfg.LogLevel. The returned LevelVar lets a reload change the level.
func newLogger(cfg config.Config) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	setLevel(level, cfg)
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	} else {
		h = slog.NewTextHandler(os.Stderr, opts)
	}
	return slog.New(h), level
}

// setLevel applies cfg.LogLevel (already validated) to level.
func setLevel(level *slog.LevelVar, cfg config.Config) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		l = slog.LevelInfo
	}
	level.Set(l)
}
