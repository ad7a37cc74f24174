package redisstore

import "context"

// Ping checks that Redis answers, and counts as an operation for the outage tracking: the tests
// use it to see a replica reconnect. Nothing outside the tests needs it (readiness does not
// depend on Redis).
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := s.rdb.Ping(ctx).Err()
	s.observe("ping", err)
	return err
}
