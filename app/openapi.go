package main

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openapiJSON is the OpenAPI 3.1 document of the admin API. It is embedded
// rather than generated so that it is reviewed like code, and
// app/openapi_test.go holds it to what the handlers really answer.
//
//go:embed openapi.json
var openapiJSON []byte

// openapiDoc is GET /admin/openapi.json: the document, byte for byte as
// committed, behind the same token as every other admin path.
func (a *App) openapiDoc(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openapiJSON)
}
