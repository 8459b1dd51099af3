// Package config defines shardproxy's configuration: plain structs loaded
// from a YAML file, with Default() for every setting and Validate() that names
// the offending key. Only cmd reads flags and the environment; constructors
// elsewhere take these structs.
package config
