package serviceclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/modulehub/simpleconnect/tokens"
)

// Token asks the service for a short-lived token naming the account's
// shop, for the module's own frontend (POST /service/api/accounts/{id}/token).
// An account whose module does not run answers a Problem (409).
func (c *Client) Token(ctx context.Context, accountID string) (tokens.Token, error) {
	var out tokens.Token
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("accounts", accountID, "token"), nil)
	if err != nil {
		return out, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return out, fmt.Errorf("serviceclient: token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return out, fmt.Errorf("serviceclient: token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return out, problemOf(resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out, fmt.Errorf("serviceclient: token: %w", err)
	}
	return out, nil
}

// Verifier checks the tokens the service issues (from the service API or
// the account page's "Open"), against the service's JWKS at this client's
// base URL. issuer is the service's PUBLIC_URL, audience its MODULE_CODE.
// The JWKS is public: it is fetched without the service token. Keep the
// verifier for the life of the process: it caches the JWKS (see
// tokens.Verifier), and a new one fetches it again.
func (c *Client) Verifier(issuer, audience string) *tokens.Verifier {
	return &tokens.Verifier{JWKSURL: c.base.String() + "/.well-known/jwks.json", Issuer: issuer, Audience: audience}
}
