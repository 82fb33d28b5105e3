package settings

import "regexp/syntax"

// Digits describes a pattern that only ever accepts ASCII digits: the page
// then asks for a numeric keyboard (inputmode="numeric") and words a
// mismatch as "digits only, Min to Max". Max < 0: no upper bound. The zero
// Digits is "not a digits-only pattern".
type Digits struct {
	Only     bool
	Min, Max int
}

// Digits tells whether the field takes digits only, and how many.
func (f Field) Digits() Digits { return f.digits }

// digitsOnly recognises the usual ways of writing "n to m digits":
// [0-9]{3,12}, \d+, \d\d\d, ([0-9]{4}), … It says no to anything it does not
// fully understand (a false "no" costs a generic message, a false "yes"
// a wrong one).
func digitsOnly(pattern string) Digits {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return Digits{}
	}
	lo, hi, ok := digitCount(re)
	if !ok || hi == 0 {
		return Digits{}
	}
	return Digits{Only: true, Min: lo, Max: hi}
}

// digitCount returns how many digits re matches (hi < 0: unbounded).
func digitCount(re *syntax.Regexp) (lo, hi int, ok bool) {
	switch re.Op {
	case syntax.OpCharClass:
		// Rune is pairs of ranges: exactly one, 0-9.
		if len(re.Rune) == 2 && re.Rune[0] == '0' && re.Rune[1] == '9' {
			return 1, 1, true
		}
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if r < '0' || r > '9' {
				return 0, 0, false
			}
		}
		return len(re.Rune), len(re.Rune), true
	case syntax.OpCapture:
		return digitCount(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		sl, sh, ok := digitCount(re.Sub[0])
		if !ok {
			return 0, 0, false
		}
		min, max := re.Min, re.Max // OpRepeat: {min,max}, max -1 when open
		switch re.Op {
		case syntax.OpStar:
			min, max = 0, -1
		case syntax.OpPlus:
			min, max = 1, -1
		case syntax.OpQuest:
			min, max = 0, 1
		}
		lo = sl * min
		switch {
		case max < 0 || sh < 0:
			hi = -1
		default:
			hi = sh * max
		}
		return lo, hi, true
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			sl, sh, ok := digitCount(sub)
			if !ok {
				return 0, 0, false
			}
			lo += sl
			if hi >= 0 {
				if sh < 0 {
					hi = -1
				} else {
					hi += sh
				}
			}
		}
		return lo, hi, len(re.Sub) > 0
	}
	return 0, 0, false
}
