package mirror

import (
	"log/slog"
	"sync"
	"time"
)

// State is what the mirror knows of the CRM connection.
type State string

// The connection states.
const (
	StateDisabled     State = "disabled"      // CRM_MYSQL_ENABLED=false
	StateConnecting   State = "connecting"    // not yet heard from
	StateConnected    State = "connected"     // the last statement succeeded
	StateUnreachable  State = "unreachable"   // network or server trouble; retrying with backoff
	StateMisconfigure State = "misconfigured" // wrong password, database or table; failing until fixed
)

// Status is a snapshot of the CRM connection for readiness and stats.
type Status struct {
	State     State     `json:"state"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
}

// tracker holds the connection state and logs each change once, not once
// per message.
type tracker struct {
	mu     sync.Mutex
	status Status
	log    *slog.Logger
	target string
	// refusedWrite: the state is misconfigured because the CRM refused a
	// statement of the mirror's. A ping's SELECT can pass where an INSERT
	// is refused (no INSERT grant, 1142), so only a write clears it.
	refusedWrite bool
}

func newTracker(initial State, log *slog.Logger, target string) *tracker {
	return &tracker{status: Status{State: initial, Since: time.Now().UTC()}, log: log, target: target}
}

func (t *tracker) get() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

// set moves to state s; err explains it when s is not connected.
func (t *tracker) set(s State, err error) { t.move(s, err, true) }

// pinged records a ping's outcome: err's state, or connected unless a
// write's refusal stands.
func (t *tracker) pinged(err error) {
	if err != nil {
		t.move(stateFor(err), err, false)
		return
	}
	t.move(StateConnected, nil, false)
}

// move is set and pinged: byWrite says whether a statement of the
// mirror's, rather than a ping, brought the news.
func (t *tracker) move(s State, err error, byWrite bool) {
	t.mu.Lock()
	if !byWrite && s == StateConnected && t.refusedWrite {
		t.mu.Unlock()
		return
	}
	t.refusedWrite = byWrite && s == StateMisconfigure
	prev := t.status
	if s == StateConnected {
		t.status.LastError = ""
	} else if err != nil {
		t.status.LastError = errText(err)
	}
	changed := prev.State != s
	if changed {
		t.status.State = s
		t.status.Since = time.Now().UTC()
	}
	t.status.Connected = s == StateConnected
	cur := t.status
	t.mu.Unlock()
	if !changed {
		return
	}
	switch s {
	case StateConnected:
		t.log.Info("crm mirror connected", "crm", t.target, "previous_state", string(prev.State))
	case StateUnreachable:
		t.log.Warn("crm mirror unreachable; messages stay in the local store and are retried with backoff",
			"crm", t.target, "err", cur.LastError)
	case StateMisconfigure:
		t.log.Error("crm mirror refused by the server (credentials, database or table); messages are marked failed until this is fixed",
			"crm", t.target, "err", cur.LastError)
	}
}

// stateFor maps a CRM error to the state it puts the connection in.
func stateFor(err error) State {
	if isAuthOrSchema(err) {
		return StateMisconfigure
	}
	return StateUnreachable
}
