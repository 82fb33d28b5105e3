// Package i18n holds the account page's words: one embedded JSON message
// catalog per language (English, Russian, Spanish: the CRM's markets), and
// the choice of a language from what the browser asks for.
//
// Every catalog has every key (a test checks it), so a lookup only falls
// back to English, and then to the key itself, when code asks for a key no
// catalog has. Texts are plain text: templates escape them. Module-specific
// words (the connection variables' labels) come from the settings file, not
// from here.
package i18n
