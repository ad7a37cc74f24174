package jose

// Accessors only the tests read; the package itself never needs them.

// KeyIDs returns the kids of the usable keys, in document order (keys
// without kid are omitted).
func (s *KeySet) KeyIDs() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.keys))
	for _, k := range s.keys {
		if k.hasKid {
			out = append(out, k.kid)
		}
	}
	return out
}

// HasKeyID reports whether the header carries a kid.
func (u *Unverified) HasKeyID() bool { return u != nil && u.hasKid }
