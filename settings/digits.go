package settings

import (
	"regexp/syntax"
	"slices"
)

// Digits describes a pattern that only ever accepts ASCII digits: the page
// then asks for a numeric keyboard (inputmode="numeric") and, when the
// pattern is Worded, words a mismatch itself ("digits only, Min to Max",
// or "exactly 10 or 12"). Max < 0: no upper bound. The zero Digits is "not
// a digits-only pattern".
type Digits struct {
	Only     bool
	Min, Max int
	// Lengths lists the only digit counts accepted when they are not one
	// unbroken run ([0-9]{10}|[0-9]{12}: 10 and 12); nil otherwise.
	Lengths []int
	// Partial: digits only, but the counts do not say it all: some digits
	// are fixed (7[0-9]{10}, [1-9][0-9]*), or the counts accepted have
	// gaps too many to list ([0-9]{3}|[0-9]{5,}). The page cannot word
	// such a pattern; its field needs a message.
	Partial bool
}

// Worded reports whether the page can say, from the counts alone, what the
// pattern accepts.
func (d Digits) Worded() bool { return d.Only && !d.Partial }

// Digits tells whether the field takes digits only, and how many.
func (f Field) Digits() Digits { return f.digits }

// maxListed is how many separate counts the page lists ("6, 8 or 10");
// more is Partial.
const maxListed = 6

// capLen stands for every count above MaxValueLen: longer values are
// refused as too long before any pattern is asked, so counts need no
// precision beyond it.
const capLen = MaxValueLen + 1

// digitsOnly recognises patterns that accept digits and nothing else:
// [0-9]{3,12}, \d+, \d\d\d, ([0-9]{4}), [0-9]{10}|[0-9]{12}, … and which
// digit counts they accept. It says no to anything it does not fully
// understand, and Partial when the counts are not the whole story (a
// false "no" costs a numeric keyboard, a false "yes" a wrong message).
func digitsOnly(pattern string) Digits {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return Digits{}
	}
	set, exact, ok := digitLengths(re)
	if !ok {
		return Digits{}
	}
	// The runs of counts accepted; an empty value is never matched against
	// the pattern, so a lone 0 (([0-9]{4})?) says nothing.
	type run struct{ lo, hi int }
	var runs []run
	for n := 0; n <= capLen; n++ {
		if !set[n] {
			continue
		}
		if len(runs) > 0 && runs[len(runs)-1].hi == n-1 {
			runs[len(runs)-1].hi = n
		} else {
			runs = append(runs, run{n, n})
		}
	}
	if len(runs) > 0 && runs[0] == (run{0, 0}) {
		runs = runs[1:]
	}
	if len(runs) == 0 {
		return Digits{} // only the empty string: no digits at all
	}
	d := Digits{Only: true, Min: runs[0].lo, Max: runs[len(runs)-1].hi, Partial: !exact}
	if d.Max == capLen {
		d.Max = -1
	}
	if len(runs) > 1 {
		for _, r := range runs {
			for n := r.lo; n <= r.hi && len(d.Lengths) <= maxListed; n++ {
				d.Lengths = append(d.Lengths, n)
			}
		}
		if d.Max < 0 || len(d.Lengths) > maxListed {
			d.Lengths, d.Partial = nil, true
		}
	}
	return d
}

// lengths is a set of digit counts, 0 to capLen (capLen: any count above
// MaxValueLen).
type lengths []bool

func newLengths(ns ...int) lengths {
	s := make(lengths, capLen+1)
	for _, n := range ns {
		s[min(n, capLen)] = true
	}
	return s
}

func (s lengths) empty() bool { return !slices.Contains(s, true) }

// plus is every a+b for a in s, b in t.
func (s lengths) plus(t lengths) lengths {
	var bs []int // t's members: usually one or two counts
	for b, in := range t {
		if in {
			bs = append(bs, b)
		}
	}
	out := newLengths()
	for a, in := range s {
		if in {
			for _, b := range bs {
				out[min(a+b, capLen)] = true
			}
		}
	}
	return out
}

func (s lengths) union(t lengths) lengths {
	out := newLengths()
	for i := range out {
		out[i] = s[i] || t[i]
	}
	return out
}

// digitLengths returns the digit counts re accepts when it accepts digits
// only; exact: it accepts every digit string of those counts (no fixed
// digit, no class narrower than 0-9).
func digitLengths(re *syntax.Regexp) (set lengths, exact, ok bool) {
	switch re.Op {
	case syntax.OpEmptyMatch:
		return newLengths(0), true, true
	case syntax.OpCharClass:
		// Rune is pairs of ranges, each inside 0-9; exact when it is 0-9.
		if len(re.Rune) == 0 {
			return nil, false, false
		}
		for i := 0; i < len(re.Rune); i += 2 {
			if re.Rune[i] < '0' || re.Rune[i+1] > '9' {
				return nil, false, false
			}
		}
		return newLengths(1), len(re.Rune) == 2 && re.Rune[0] == '0' && re.Rune[1] == '9', true
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if r < '0' || r > '9' {
				return nil, false, false
			}
		}
		return newLengths(len(re.Rune)), len(re.Rune) == 0, true
	case syntax.OpCapture:
		return digitLengths(re.Sub[0])
	case syntax.OpConcat, syntax.OpAlternate:
		if len(re.Sub) == 0 {
			return nil, false, false
		}
		set, exact = newLengths(), true
		if re.Op == syntax.OpConcat {
			set = newLengths(0)
		}
		for _, sub := range re.Sub {
			s, e, ok := digitLengths(sub)
			if !ok {
				return nil, false, false
			}
			// Concatenating exact pieces is exact: a digit string of a
			// summed count splits into pieces each of its piece's counts.
			// An alternation of exact branches is exact too.
			exact = exact && e
			if re.Op == syntax.OpConcat {
				set = set.plus(s)
			} else {
				set = set.union(s)
			}
		}
		return set, exact, true
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		sub, exact, ok := digitLengths(re.Sub[0])
		if !ok {
			return nil, false, false
		}
		lo, hi := re.Min, re.Max // OpRepeat: {min,max}, max -1 when open
		switch re.Op {
		case syntax.OpStar:
			lo, hi = 0, -1
		case syntax.OpPlus:
			lo, hi = 1, -1
		case syntax.OpQuest:
			lo, hi = 0, 1
		}
		if hi < 0 || hi > capLen {
			hi = capLen // every count past capLen is capLen: more rounds add nothing
		}
		// The union of sub repeated k times, k from lo to hi.
		set, power := newLengths(), newLengths(0)
		for k := 0; k <= hi; k++ {
			if k >= lo {
				set = set.union(power)
			}
			next := power.plus(sub)
			if slices.Equal(next, power) {
				break // a fixed point (only 0, or only capLen): nothing new follows
			}
			power = next
		}
		if set.empty() {
			return nil, false, false
		}
		return set, exact, true
	}
	return nil, false, false
}
