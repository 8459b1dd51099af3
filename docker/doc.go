// Package docker holds the container images (Dockerfile for shardproxy and
// shardctl, socialapp.Dockerfile for the reference app), compose.yaml for a
// 3-proxy, 2-shard cluster with replicas, Prometheus and Grafana, and the
// files compose mounts. Its only Go code is compose_test.go, which checks
// that compose.yaml and the mounted configs agree, since no Docker engine
// runs in CI.
package docker
