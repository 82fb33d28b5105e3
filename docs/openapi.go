// Package docs holds the service's OpenAPI document (openapi.yaml), so
// the service serves the very file the repository documents, and a test
// checks real replies of every route against it.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml: the admin API and the service API, with
// their problem shapes.
//
//go:embed openapi.yaml
var OpenAPI []byte
