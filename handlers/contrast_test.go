package handlers_test

import (
	"math"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The stylesheet's text colours meet WCAG 2.x AA (4.5:1 for normal text)
// on the backgrounds they are used on.
func TestStylesheetColoursHaveEnoughContrast(t *testing.T) {
	css, err := os.ReadFile("static/style.css")
	require.NoError(t, err)
	vars := map[string]string{"white": "#ffffff"}
	for _, m := range regexp.MustCompile(`--([a-z-]+):\s*(#[0-9a-fA-F]{6})`).FindAllStringSubmatch(string(css), -1) {
		vars[m[1]] = m[2]
	}
	pairs := []struct{ fg, bg string }{
		{"fg", "surface"}, {"fg", "bg"}, {"muted", "surface"}, {"muted", "bg"},
		{"accent", "surface"}, {"accent", "bg"}, {"accent-dark", "surface"},
		{"ok", "surface"}, {"warn", "surface"}, {"bad", "surface"},
		{"fg", "ok-bg"}, {"fg", "bad-bg"}, {"bad", "bad-bg"}, {"fg", "warn-bg"}, {"warn", "warn-bg"},
		{"white", "accent"}, {"white", "accent-dark"}, {"white", "danger"}, {"white", "danger-dark"},
	}
	for _, p := range pairs {
		fg, bg := vars[p.fg], vars[p.bg]
		require.NotEmpty(t, fg, "--%s is defined", p.fg)
		require.NotEmpty(t, bg, "--%s is defined", p.bg)
		ratio := contrast(t, fg, bg)
		assert.GreaterOrEqual(t, ratio, 4.5, "--%s on --%s: %.2f:1", p.fg, p.bg, ratio)
	}
	// Borders of inputs are UI components: 3:1 (WCAG 1.4.11).
	assert.GreaterOrEqual(t, contrast(t, vars["line"], vars["surface"]), 3.0, "input borders")
	assert.GreaterOrEqual(t, contrast(t, vars["focus"], vars["surface"]), 3.0, "the focus ring")
	assert.GreaterOrEqual(t, contrast(t, vars["focus"], vars["bg"]), 3.0, "the focus ring on the page background")
}

func contrast(t *testing.T, a, b string) float64 {
	t.Helper()
	la, lb := luminance(t, a), luminance(t, b)
	return (math.Max(la, lb) + 0.05) / (math.Min(la, lb) + 0.05)
}

func luminance(t *testing.T, hex string) float64 {
	t.Helper()
	require.Len(t, hex, 7, "a #rrggbb colour")
	var c [3]float64
	for i := range c {
		v, err := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		require.NoError(t, err, "colour %s", hex)
		s := float64(v) / 255
		if s <= 0.03928 {
			c[i] = s / 12.92
		} else {
			c[i] = math.Pow((s+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*c[0] + 0.7152*c[1] + 0.0722*c[2]
}
