package azure

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/binary"
	"math/big"
)

// authorizedKey renders an RSA public key as an OpenSSH authorized_keys line
// ("ssh-rsa AAAA..."), the form Azure's osProfile takes (RFC 4253 §6.6).
func authorizedKey(k *rsa.PublicKey) string {
	var b []byte
	b = appendString(b, []byte("ssh-rsa"))
	b = appendString(b, mpint(big.NewInt(int64(k.E))))
	b = appendString(b, mpint(k.N))
	return "ssh-rsa " + base64.StdEncoding.EncodeToString(b)
}

func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// mpint is a positive big integer in SSH wire form: big-endian with a
// leading zero byte when the top bit is set.
func mpint(n *big.Int) []byte {
	b := n.Bytes()
	if len(b) > 0 && b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return b
}
