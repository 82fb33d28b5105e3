package crmtest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// A few of the CRM's own API methods, for the service API's proxy and the
// module's workers: GET /api/v5/orders lists the orders created with the
// same API key, POST /api/v5/orders/create creates one (form field
// "order", JSON, as the CRM takes it). Both want an X-API-KEY, as the CRM
// does, and answer in its envelope.

// API scripts the replies to every call of method and path (e.g. "GET",
// "/api/v5/orders"), whatever the key, in order; the last one repeats.
func API(method, path string, replies ...Reply) Option {
	return func(f *Fake) { f.api[method+" "+path] = replies }
}

// JSON is a reply with a JSON body.
func JSON(status int, body string) Reply { return jsonReply(status, body) }

func (f *Fake) scripted(c Call) (Reply, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := c.Method + " " + c.Path
	script, ok := f.api[key]
	if !ok || len(script) == 0 {
		return Reply{}, false
	}
	if len(script) > 1 {
		f.api[key] = script[1:]
	}
	return script[0], true
}

func (f *Fake) listOrders(c Call) Reply {
	key := c.APIKey()
	if key == "" {
		return Status(http.StatusUnauthorized)
	}
	f.mu.Lock()
	orders := append([]map[string]any{}, f.orders[key]...)
	f.mu.Unlock()
	body, _ := json.Marshal(map[string]any{
		"success":    true,
		"pagination": map[string]any{"limit": 20, "totalCount": len(orders), "currentPage": 1, "totalPageCount": 1},
		"orders":     orders,
	})
	return jsonReply(http.StatusOK, string(body))
}

func (f *Fake) createOrder(c Call) Reply {
	key := c.APIKey()
	if key == "" {
		return Status(http.StatusUnauthorized)
	}
	var order map[string]any
	if err := json.Unmarshal([]byte(c.Form.Get("order")), &order); err != nil || order == nil {
		return jsonReply(http.StatusBadRequest, `{"success":false,"errorMsg":"Parameter 'order' is missing"}`)
	}
	f.mu.Lock()
	id := len(f.orders[key]) + 1
	order["id"] = id
	if _, ok := order["number"]; !ok {
		order["number"] = strconv.Itoa(id) + "A"
	}
	f.orders[key] = append(f.orders[key], order)
	f.mu.Unlock()
	body, _ := json.Marshal(map[string]any{"success": true, "id": id, "order": order})
	return jsonReply(http.StatusCreated, string(body))
}

// Orders returns the orders created with apiKey.
func (f *Fake) Orders(apiKey string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.orders[apiKey]...)
}

// MaxInWindow is the largest number of calls matching keep that the fake
// received within any window of length w ([t, t+w)): the rate a shop's
// CRM saw. A nil keep counts every call.
func (f *Fake) MaxInWindow(w time.Duration, keep func(Call) bool) int {
	var at []time.Time
	for _, c := range f.Calls() {
		if keep == nil || keep(c) {
			at = append(at, c.At)
		}
	}
	slices.SortFunc(at, time.Time.Compare)
	best := 0
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < w; j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}
