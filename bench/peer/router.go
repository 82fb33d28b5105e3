package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	retailcrm "github.com/retailcrm/api-client-go/v2"
)

// newRouter is the module as gin's README and RetailCRM's transport core
// lay it out: gin.Default (request log and recovery), the connection
// config route, and the register route behind the token check.
func newRouter(cfg config, rdb *redis.Client) *gin.Engine {
	r := gin.Default()
	r.GET("/config", connectionConfig(cfg.PublicURL+"/register", []string{"integration_read", "integration_write"}))
	r.POST("/register", verifyConnectRequest(cfg.Secret), func(c *gin.Context) {
		req := c.MustGet("request").(retailcrm.ConnectRequest)
		clientID := newClientID()
		if cfg.SameRoundTrips {
			// The service's attempt bound per (shop, key): one Redis round
			// trip before any CRM call.
			if err := rdb.Incr(c.Request.Context(), cfg.KeyPrefix+":attempts:"+req.SystemURL()+":"+req.APIKey).Err(); err != nil {
				c.JSON(http.StatusOK, retailcrm.ErrorResponse{ErrorMessage: "storage error"})
				return
			}
			if creds, _, err := retailcrm.New(req.SystemURL(), req.APIKey).APICredentials(); err != nil || !creds.Success {
				c.JSON(http.StatusOK, retailcrm.ErrorResponse{ErrorMessage: "unknown API key"})
				return
			}
			if err := rdb.HSet(c.Request.Context(), cfg.KeyPrefix+":"+req.SystemURL(), "pending", req.APIKey).Err(); err != nil {
				c.JSON(http.StatusOK, retailcrm.ErrorResponse{ErrorMessage: "storage error"})
				return
			}
		}
		if err := editModule(req.SystemURL(), req.APIKey, module(cfg, clientID)); err != nil {
			c.JSON(http.StatusOK, retailcrm.ErrorResponse{ErrorMessage: err.Error()})
			return
		}
		// The whole account: one plaintext hash per shop, last write wins.
		if err := rdb.HSet(c.Request.Context(), cfg.KeyPrefix+":"+req.SystemURL(),
			"apiKey", req.APIKey, "clientId", clientID).Err(); err != nil {
			c.JSON(http.StatusOK, retailcrm.ErrorResponse{ErrorMessage: "storage error"})
			return
		}
		c.JSON(http.StatusOK, retailcrm.NewConnectResponse(cfg.PublicURL+"/account"))
	})
	return r
}

// connectionConfig and verifyConnectRequest do what mg-transport-core's
// ConnectionConfig and VerifyConnectRequest middlewares do (the Go module
// proxy here refuses mg-transport-core, so they are restated; both are a
// few lines over api-client-go's types): answer the configUrl, and parse
// the "register" form field and check its HMAC token before the handler.
func connectionConfig(registerURL string, scopes []string) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.AbortWithStatusJSON(http.StatusOK, retailcrm.ConnectionConfigResponse{
			SuccessfulResponse: retailcrm.SuccessfulResponse{Success: true}, Scopes: scopes, RegisterURL: registerURL,
		})
	}
}

func verifyConnectRequest(secret string) gin.HandlerFunc {
	return func(c *gin.Context) {
		raw := c.PostForm("register")
		if raw == "" {
			c.AbortWithStatusJSON(http.StatusOK, retailcrm.ErrorResponse{ErrorMessage: "No data provided"})
			return
		}
		var req retailcrm.ConnectRequest
		if err := json.Unmarshal([]byte(raw), &req); err != nil {
			c.AbortWithStatusJSON(http.StatusOK, retailcrm.ErrorResponse{ErrorMessage: "Invalid JSON provided"})
			return
		}
		if !req.Verify(secret) {
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{})
			return
		}
		c.Set("request", req)
	}
}

func module(cfg config, clientID string) retailcrm.IntegrationModule {
	active := true
	return retailcrm.IntegrationModule{
		Code: cfg.ModuleCode, IntegrationCode: cfg.ModuleCode, Active: &active, Name: "Peer module",
		ClientID: clientID, BaseURL: cfg.PublicURL, AccountURL: cfg.PublicURL + "/account",
		Actions: retailcrm.StringMap{"activity": "/activity"},
	}
}

func newClientID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
