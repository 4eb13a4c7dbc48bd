package config

import "github.com/peerpod/peerpod/api/initdata"

// DecodeInitdata is peerpodd's InitdataDecoder: INITDATA is base64 of gzip
// (or plain) initdata TOML, which must parse.
func DecodeInitdata(value string) (string, error) {
	text, err := initdata.DecodeAnnotation(value)
	if err != nil {
		return "", err
	}
	if _, err := initdata.Parse(text); err != nil {
		return "", err
	}
	return string(text), nil
}
