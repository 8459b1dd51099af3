package socialapp

import (
	"bytes"
	_ "embed"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/shardproxy/shardproxy/topology"
)

// ShardingYAML is sharding.yaml: the intended topology.Spec, i.e. the body
// of a shardproxy config's "sharding:" section.
//
//go:embed sharding.yaml
var ShardingYAML []byte

// ShardingSpec decodes ShardingYAML (unknown keys are an error).
func ShardingSpec() (topology.Spec, error) {
	var spec topology.Spec
	dec := yaml.NewDecoder(bytes.NewReader(ShardingYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&spec); err != nil {
		return topology.Spec{}, fmt.Errorf("socialapp: sharding.yaml: %w", err)
	}
	return spec, nil
}
