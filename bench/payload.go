package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"math/rand/v2"
	"strconv"
	"time"
)

// businessID is the Instagram account the deliveries are addressed to.
const businessID = "17841400000000001"

// midPrefix is the constant head of a real Instagram mid (base64 of
// "ig_item:1:IGMessage:<account>:..."); the tail is random, as real ones
// look to an index: inserts scatter across the unique index on mids.
const midPrefix = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOj"

// customers is how many distinct senders the load comes from.
const customers = 1000

// payloads builds signed deliveries with unique mids. One per load
// goroutine: it is not safe for concurrent use.
type payloads struct {
	rng *rand.Rand
	mac hash.Hash
	n   uint64
}

func newPayloads(secret []byte, seed uint64) *payloads {
	return &payloads{
		rng: rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano()))),
		mac: hmac.New(sha256.New, secret),
	}
}

// delivery returns a body of n inbound text messages, each with a fresh
// random mid, and its X-Hub-Signature-256 header.
func (p *payloads) delivery(n int) ([]byte, string) {
	now := time.Now().UnixMilli()
	b := make([]byte, 0, 96+n*260)
	b = append(b, `{"object":"instagram","entry":[{"id":"`+businessID+`","time":`...)
	b = strconv.AppendInt(b, now, 10)
	b = append(b, `,"messaging":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		p.n++
		b = append(b, `{"sender":{"id":"55822019374`...)
		b = strconv.AppendUint(b, 10000+p.rng.Uint64N(customers), 10)
		b = append(b, `"},"recipient":{"id":"`+businessID+`"},"timestamp":`...)
		b = strconv.AppendInt(b, now, 10)
		b = append(b, `,"message":{"mid":"`+midPrefix...)
		b = hex.AppendEncode(b, p.randomBytes())
		b = append(b, `","text":"Hi! Do you ship to Kyiv? \u041f\u0440\u0438\u0432\u0456\u0442 #`...)
		b = strconv.AppendUint(b, p.n, 10)
		b = append(b, `"}}`...)
	}
	b = append(b, `]}]}`...)
	return b, p.sign(b)
}

func (p *payloads) randomBytes() []byte {
	var r [16]byte
	for i := 0; i < len(r); i += 8 {
		v := p.rng.Uint64()
		for k := range 8 {
			r[i+k] = byte(v >> (8 * k))
		}
	}
	return r[:]
}

func (p *payloads) sign(body []byte) string {
	p.mac.Reset()
	p.mac.Write(body)
	var sum [sha256.Size]byte
	return "sha256=" + hex.EncodeToString(p.mac.Sum(sum[:0]))
}
