package crmtest

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// LoopbackResolver resolves every name under suffix to 127.0.0.1, and no
// other name, without any packet: its Dial hands the Go resolver one end of
// an in-memory pipe and answers on the other (DNS over a stream, as over
// TCP). So each shop can have its own systemUrl host (shop-000042.<suffix>)
// while one Fake on 127.0.0.1 answers them all, and the CRM client still
// resolves, dials and pools per host as it does for real shops. Pass it as
// crm.Options.Resolver (app.Options.Resolver); the load tool does.
func LoopbackResolver(suffix string) *net.Resolver {
	suffix = "." + strings.ToLower(strings.Trim(suffix, ".")) + "."
	return &net.Resolver{
		PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			client, server := net.Pipe()
			go serveDNS(server, suffix)
			return noDeadlines{client}, nil
		},
	}
}

// noDeadlines drops the resolver's deadlines: serveDNS answers at once or
// hangs up, and a pipe's deadline timer would keep the pipe in memory until
// it fires, seconds later, inflating the heap and RSS this tool reports.
type noDeadlines struct{ net.Conn }

func (noDeadlines) SetDeadline(time.Time) error      { return nil }
func (noDeadlines) SetReadDeadline(time.Time) error  { return nil }
func (noDeadlines) SetWriteDeadline(time.Time) error { return nil }

// serveDNS answers length-prefixed DNS queries until the client hangs up.
func serveDNS(c net.Conn, suffix string) {
	defer c.Close()
	for {
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		query := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(c, query); err != nil {
			return
		}
		reply, err := answerDNS(query, suffix)
		if err != nil {
			return
		}
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reply)), uint16(len(reply)))
		if _, err := c.Write(append(out, reply...)); err != nil {
			return
		}
	}
}

// answerDNS answers A with 127.0.0.1 for names under suffix, AAAA with no
// record (so dials use IPv4), and NXDOMAIN for every other name.
func answerDNS(query []byte, suffix string) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	ours := strings.HasSuffix(strings.ToLower(q.Name.String()), suffix)
	if !ours {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if ours && q.Type == dnsmessage.TypeA {
		hdr := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60}
		if err := b.AResource(hdr, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
