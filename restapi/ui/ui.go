// Package ui holds the dashboard's static files, embedded in the binary
// (no CDN): a page that reads the REST API of the peer serving it.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed index.html app.js style.css
var files embed.FS

// Handler serves the dashboard under prefix (e.g. "/ui/").
func Handler(prefix string) http.Handler {
	sub, _ := fs.Sub(files, ".")
	return http.StripPrefix(prefix, http.FileServer(http.FS(sub)))
}
