package serviceapi_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/handlers/serviceapi"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// unsized hides a body's length, so the client sends it chunked.
type unsized struct{ io.Reader }

// The proxy's body cap (serviceapi.DefaultMaxBody) is its own: a body
// over it is refused with 413 and nothing reaches the CRM, whether its
// length is announced or not; one under it passes, however far over the
// pages' 64 KiB.
func TestTheProxyRefusesABodyOverItsCapAndSendsNothing(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, nil)
		acc := e.connect("key-body")
		path := "/service/api/accounts/" + acc.ID + "/crm/api/v5/orders/create"
		form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		calls := len(e.fake.Calls())

		over := bytes.Repeat([]byte("a"), serviceapi.DefaultMaxBody+1)
		for name, body := range map[string]func() io.Reader{
			"with a Content-Length": func() io.Reader { return bytes.NewReader(over) },
			"chunked":               func() io.Reader { return unsized{bytes.NewReader(over)} },
		} {
			r := e.call(0, http.MethodPost, path, serviceToken, body(), form)
			assert.Equal(t, "too_large", r.problem(t, http.StatusRequestEntityTooLarge), name)
		}
		assert.Equal(t, "2", e.metric(`simpleconnect_crm_proxy_requests_total{method="POST",outcome="too_large"}`))

		order := `{"firstName":"` + strings.Repeat("x", 100<<10) + `"}`
		under := url.Values{"order": {order}}.Encode()
		require.Greater(t, len(under), 64<<10, "over the pages' body limit")
		for name, body := range map[string]func() io.Reader{
			"with a Content-Length": func() io.Reader { return strings.NewReader(under) },
			"chunked":               func() io.Reader { return unsized{strings.NewReader(under)} },
		} {
			r := e.call(0, http.MethodPost, path, serviceToken, body(), form)
			require.Equal(t, http.StatusCreated, r.StatusCode, "%s: %s", name, r.body)
		}

		// Closing the fake waits for every request it received to end: what
		// it recorded then is all that reached it.
		e.fake.Close()
		got := e.fake.Calls()[calls:]
		require.Len(t, got, 2, "only the two bodies under the cap reached the CRM")
		for _, c := range got {
			assert.Equal(t, under, string(c.Body), "the body as sent")
		}
		assert.Len(t, e.fake.Orders("key-body"), 2)
	})
}

// A chunked body that cannot be read is the caller's fault (400), and
// nothing is sent.
func TestTheProxySendsNothingOfABrokenChunkedBody(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, nil)
		acc := e.connect("key-chunks")
		calls := len(e.fake.Calls())

		conn, err := net.Dial("tcp", strings.TrimPrefix(e.srvs[0].URL, "http://"))
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "POST /service/api/accounts/"+acc.ID+"/crm/api/v5/orders/create HTTP/1.1\r\n"+
			"Host: module.test\r\nAuthorization: Bearer "+serviceToken+"\r\nTransfer-Encoding: chunked\r\n"+
			"Content-Type: application/x-www-form-urlencoded\r\n\r\n5\r\norder\r\nzz\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, "bad_request", reply{resp, string(body)}.problem(t, http.StatusBadRequest))

		e.fake.Close()
		assert.Len(t, e.fake.Calls(), calls, "nothing reached the CRM")
	})
}

// Replies stream back through pooled buffers: concurrent replies much
// larger than a buffer each come back whole and byte for byte their own.
func TestProxiedRepliesComeBackWholeWhileOthersStream(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		const calls = 8
		var replies []crmtest.Reply
		for i := range calls {
			body := `{"success":true,"pad":"` + strings.Repeat(string(rune('a'+i)), 300<<10) + `"}`
			replies = append(replies, crmtest.JSON(http.StatusOK, body))
		}
		e := newEnv(t, b, []crmtest.Option{crmtest.API("GET", "/api/v5/reference/sites", replies...)},
			withRate(1_000_000, 0))
		acc := e.connect("key-streams")
		got := make(chan string, calls)
		var wg sync.WaitGroup
		for range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got <- e.call(0, http.MethodGet, "/service/api/accounts/"+acc.ID+"/crm/api/v5/reference/sites", serviceToken, nil, nil).body
			}()
		}
		wg.Wait()
		close(got)
		seen := map[string]bool{}
		for body := range got {
			seen[body] = true
		}
		for _, r := range replies {
			assert.True(t, seen[r.Body], "a %d-byte reply came back whole", len(r.Body))
		}
	})
}
