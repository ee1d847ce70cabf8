package mirror

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// MySQLConfig says how to reach the CRM.
type MySQLConfig struct {
	Host, User, Password, Database string
	Port                           int
	Table                          string // a plain identifier, checked by config
	TLS                            string // preferred, true, skip-verify, false
	Workers                        int    // sizes the connection pool
	Timeout                        time.Duration
	Logger                         *slog.Logger
}

// MySQLSink writes rows into the CRM table through GORM's MySQL driver. It
// never creates, alters or migrates the table.
type MySQLSink struct {
	db    *gorm.DB
	sqlDB *sql.DB
	table string // already quoted
	log   *slog.Logger

	mu   sync.RWMutex
	cols map[string]column
	read bool // cols came from the server

	// conns describes each pooled connection, keyed by the driver's
	// connection as database/sql hands it out: its opening serial, and
	// its server thread id once asked for, so that the id costs one query
	// per connection, not per INSERT.
	connMu   sync.Mutex
	conns    map[any]connInfo
	maxConns int // bound of conns; past it the map starts again
	// suspects are the server threads of INSERTs whose outcome is
	// unknown: the server may still be running them (a lock wait) or
	// their bytes may still be on the way. They are killed, and waited
	// for, before the next check of what the table holds.
	suspects map[uint64]bool
	killWarn sync.Once

	// What lets a statement see privileges granted after a refusal; see
	// withConn.
	maxOpen   int
	opened    atomic.Uint64 // serial of the last connection opened
	refused   atomic.Bool   // the server refused a statement for good, and no INSERT has passed since
	minSerial atomic.Uint64 // connections opened before this serial may predate a grant
}

// connInfo is what the sink knows of one pooled connection.
type connInfo struct {
	serial uint64 // from stampConnector; 0 once forgotten
	thread uint64 // server thread id; 0 until asked for
}

var _ Sink = (*MySQLSink)(nil)

// DSN builds the driver's connection string; it holds the password, so it
// must never be logged.
func (c MySQLConfig) DSN() string {
	mc := mysql.NewConfig()
	mc.User = c.User
	mc.Passwd = c.Password
	mc.Net = "tcp"
	mc.Addr = net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	mc.DBName = c.Database
	mc.Loc = time.UTC
	mc.ParseTime = true
	// One round trip per statement instead of prepare, execute and close.
	mc.InterpolateParams = true
	mc.Timeout = 5 * time.Second
	mc.ReadTimeout = c.Timeout + 5*time.Second
	mc.WriteTimeout = c.Timeout + 5*time.Second
	mc.TLSConfig = c.TLS
	if c.TLS == "" {
		mc.TLSConfig = "preferred"
	}
	// The session speaks UTC, so a TIMESTAMP column stores the Instagram
	// time as given whatever the server's or the host's zone.
	mc.Params = map[string]string{"charset": "utf8mb4", "time_zone": "'+00:00'"}
	return mc.FormatDSN()
}

// Redacted describes the target without the password, for logs.
func (c MySQLConfig) Redacted() string {
	return fmt.Sprintf("%s@%s/%s.%s (tls=%s)", c.User, net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), c.Database, c.Table, c.TLS)
}

// OpenMySQL prepares the connection pool. It does not connect: a CRM that
// is down at start-up must not stop the service.
func OpenMySQL(c MySQLConfig) (*MySQLSink, error) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	_ = mysql.SetLogger(driverLogger{c.Logger})
	// Parsed back, so that the driver reads "charset" as its own option
	// rather than as a session variable.
	mc, err := mysql.ParseDSN(c.DSN())
	if err != nil {
		return nil, fmt.Errorf("open crm %s: %w", c.Redacted(), err)
	}
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("open crm %s: %w", c.Redacted(), err)
	}
	workers := max(c.Workers, 1)
	s := &MySQLSink{
		table:    "`" + c.Table + "`",
		log:      c.Logger,
		cols:     defaultColumns,
		conns:    map[any]connInfo{},
		maxConns: max(64, 4*(workers+2)),
		suspects: map[uint64]bool{},
		maxOpen:  workers + 2,
	}
	s.sqlDB = sql.OpenDB(stampConnector{Connector: connector, sink: s})
	s.db, err = gorm.Open(gormmysql.New(gormmysql.Config{
		Conn:                      s.sqlDB,
		DSNConfig:                 mc,
		SkipInitializeWithVersion: true,
	}), &gorm.Config{
		DisableAutomaticPing:   true,
		SkipDefaultTransaction: true,
		Logger:                 logger.Discard,
	})
	if err != nil {
		_ = s.sqlDB.Close()
		return nil, fmt.Errorf("open crm %s: %w", c.Redacted(), err)
	}
	s.sqlDB.SetMaxOpenConns(s.maxOpen)
	s.sqlDB.SetMaxIdleConns(s.maxOpen)
	// Well below MySQL's wait_timeout (8 h by default, often 60-600 s on
	// shared hosting), so the pool never hands out a connection the server
	// has already closed.
	s.sqlDB.SetConnMaxLifetime(3 * time.Minute)
	s.sqlDB.SetConnMaxIdleTime(time.Minute)
	return s, nil
}

// Close closes the pool.
func (s *MySQLSink) Close() error { return s.sqlDB.Close() }

// Ping checks the connection, reads the table's columns once, and proves
// the table is there.
func (s *MySQLSink) Ping(ctx context.Context) error {
	err := s.withConn(ctx, s.refused.Load(), func(c pooled) error {
		// Learning the connection's thread id here saves the first INSERT
		// on it a round trip.
		if _, err := s.threadID(c); err != nil {
			return err
		}
		return c.tx.Exec("SELECT 1 FROM " + s.table + " LIMIT 0").Error
	})
	if err != nil {
		// A SELECT that passes proves nothing of INSERT, so only an
		// INSERT ends the refusal (see withConn); a refused one starts it.
		if c, _ := Classify(err); c == Permanent {
			s.refused.Store(true)
		}
		return err
	}
	s.mu.RLock()
	read := s.read
	s.mu.RUnlock()
	if !read {
		s.loadColumns(ctx)
	}
	return nil
}

// loadColumns reads the charset and size of the table's text columns, so
// that rows are fitted to what the server will take. Shared-hosting CRM
// tables are often utf8mb3 or latin1, where an emoji fails under strict mode.
func (s *MySQLSink) loadColumns(ctx context.Context) {
	var rows []struct {
		ColumnName  string
		Charset     sql.NullString
		MaxChars    sql.NullInt64
		OctetLength sql.NullInt64
		DataType    string
	}
	err := s.db.WithContext(ctx).Raw(`SELECT COLUMN_NAME AS column_name, CHARACTER_SET_NAME AS charset,
		CHARACTER_MAXIMUM_LENGTH AS max_chars, CHARACTER_OCTET_LENGTH AS octet_length, DATA_TYPE AS data_type
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`,
		strings.Trim(s.table, "`")).Scan(&rows).Error
	if err != nil || len(rows) == 0 {
		s.log.Warn("crm: could not read the table's columns; assuming utf8mb4", "err", err)
		return
	}
	cols := make(map[string]column, len(defaultColumns))
	for name, def := range defaultColumns {
		cols[name] = def
	}
	for _, r := range rows {
		name := strings.ToLower(r.ColumnName)
		if _, ok := cols[name]; !ok || !r.Charset.Valid {
			continue
		}
		c := column{charset: r.Charset.String}
		if strings.Contains(strings.ToLower(r.DataType), "char") {
			c.maxChars = int(r.MaxChars.Int64)
		} else {
			c.maxBytes = int(r.OctetLength.Int64)
		}
		cols[name] = c
	}
	s.mu.Lock()
	s.cols, s.read = cols, true
	s.mu.Unlock()
	s.log.Info("crm: table columns read",
		"message_charset", cols["message"].charset, "username_charset", cols["username"].charset)
}

func (s *MySQLSink) columns() map[string]column {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cols
}

// Fit fits rows to the table's columns.
func (s *MySQLSink) fit(rows []Row) {
	cols := s.columns()
	for i := range rows {
		fitRow(&rows[i], cols)
	}
}

// Insert writes rows with one multi-row INSERT. On a per-row data error
// for a single row it falls back to ASCII and tries once more.
func (s *MySQLSink) Insert(ctx context.Context, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	s.fit(rows)
	err := s.insert(ctx, rows)
	if err != nil && len(rows) == 1 {
		if c, _ := Classify(err); c == RowData {
			// The server refused what its columns claimed to take (a
			// charset the sink does not know); keep the message, lose accents.
			fitRow(&rows[0], asciiOnly)
			rows[0].Degraded = true
			return s.insert(ctx, rows)
		}
	}
	return err
}

func (s *MySQLSink) insert(ctx context.Context, rows []Row) error {
	var b strings.Builder
	b.Grow(80 + len(rows)*12)
	b.WriteString("INSERT INTO ")
	b.WriteString(s.table)
	b.WriteString(" (user_id, username, direction, message, created_at) VALUES ")
	args := make([]any, 0, len(rows)*5)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?)")
		r := &rows[i]
		args = append(args, r.UserID, r.Username, r.Direction, r.Message, r.CreatedAt)
	}
	refused := s.refused.Load()
	var serial uint64
	err := s.withConn(ctx, refused, func(c pooled) error {
		serial = c.serial
		id, err := s.threadID(c)
		if err != nil {
			return err
		}
		// Straight to the connection: GORM would rebuild the statement
		// around every placeholder (thousands of allocations a batch) to
		// hand the driver the same SQL and arguments.
		_, err = c.conn.ExecContext(ctx, b.String(), args...)
		if _, unknown := Classify(err); err != nil && unknown && id != 0 {
			s.connMu.Lock()
			s.suspects[id] = true
			s.connMu.Unlock()
		}
		return err
	})
	switch class, _ := Classify(err); {
	case err == nil && refused:
		// The grant has come, and before this connection opened (it
		// opened after this INSERT began): any older one may predate it.
		s.refused.Store(false)
		raise(&s.minSerial, serial)
	case class == Permanent:
		s.refused.Store(true)
	}
	return err
}

// pooled is a connection of the pool lent to one call, with what the
// sink knows of it.
type pooled struct {
	tx     *gorm.DB // bound to conn
	conn   *sql.Conn
	key    any    // the driver's connection: the key of s.conns
	serial uint64 // when it was opened; 0 if forgotten
}

// errStaleConn says withConn closed the connection it was lent and needs
// another.
var errStaleConn = errors.New("crm connection may predate a grant")

// withConn runs fn on a connection of the pool whose session sees the
// server's current privileges: with fresh, which a call after a refusal
// asks for, on one opened after withConn began.
//
// MySQL and MariaDB copy an account's privileges into a session and
// refresh the copy only in part: a table grant counts from the next
// statement, a database grant (GRANT … ON crm.*, the usual form) only
// from the next USE, a global one never. After a refusal, then, every
// session that began before the GRANT lifting it refuses on, and the
// pool, kept busy by pings, would go on handing them out until their
// lifetime ends. A USE before the next statement would miss global
// grants. Emptying the idle pool at the refusal would miss the sessions
// pings open between the refusal and the grant; emptying it at the next
// attempt, those on loan at that moment, which come back afterwards.
// So every connection carries the serial it was opened with (see
// stampConnector), and one too old for the call is closed, not used:
//
//   - while refused, a call takes only a connection opened after it
//     began (fresh), after any GRANT that came before it;
//   - once an INSERT passes again, every connection opened before that
//     INSERT's own may predate the grant, and is closed when handed out.
//
// Otherwise nothing is closed, and none of this costs a round trip.
func (s *MySQLSink) withConn(ctx context.Context, fresh bool, fn func(pooled) error) error {
	floor := s.minSerial.Load()
	if fresh {
		floor = max(floor, s.opened.Load()+1)
	}
	for tries := 0; ; tries++ {
		err := s.db.WithContext(ctx).Connection(func(tx *gorm.DB) error {
			c := pooled{tx: tx}
			c.conn, _ = tx.Statement.ConnPool.(*sql.Conn)
			if c.conn == nil {
				return fmt.Errorf("crm connection: gorm lent a %T, not a *sql.Conn", tx.Statement.ConnPool)
			}
			_ = c.conn.Raw(func(dc any) error { c.key = dc; return nil })
			s.connMu.Lock()
			c.serial = s.conns[c.key].serial
			s.connMu.Unlock()
			// Each stale connection goes for good, so the pool runs out of
			// them; the bound only guards against others returning stale
			// ones as fast as this closes them.
			if c.serial < floor && tries <= s.maxOpen {
				// database/sql closes a connection whose Raw returns
				// ErrBadConn instead of pooling it again.
				_ = c.conn.Raw(func(any) error { return driver.ErrBadConn })
				return errStaleConn
			}
			return fn(c)
		})
		if !errors.Is(err, errStaleConn) {
			return err
		}
	}
}

// raise sets v to n unless it holds more already.
func raise(v *atomic.Uint64, n uint64) {
	for {
		cur := v.Load()
		if n <= cur || v.CompareAndSwap(cur, n) {
			return
		}
	}
}

// remember records a connection the pool has just opened.
func (s *MySQLSink) remember(conn driver.Conn, serial uint64) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if len(s.conns) >= s.maxConns {
		// Closed connections are never reported, so their entries stay
		// until the map starts again; a live connection forgotten with
		// them costs a query, or a reconnection after a refusal.
		clear(s.conns)
	}
	s.conns[conn] = connInfo{serial: serial}
}

// threadID returns the server thread id of c.
func (s *MySQLSink) threadID(c pooled) (uint64, error) {
	s.connMu.Lock()
	id := s.conns[c.key].thread
	s.connMu.Unlock()
	if id != 0 {
		return id, nil
	}
	if err := c.tx.Raw("SELECT CONNECTION_ID()").Scan(&id).Error; err != nil {
		return 0, err
	}
	s.connMu.Lock()
	// Read before any clearing, so the connection keeps its serial; a
	// known connection adds no entry, so only a new one may clear.
	info, known := s.conns[c.key]
	if !known && len(s.conns) >= s.maxConns {
		clear(s.conns)
	}
	info.thread = id
	s.conns[c.key] = info
	s.connMu.Unlock()
	return id, nil
}

// stampConnector opens the pool's connections, numbering each in order,
// so that withConn can tell a session opened after a moment from one
// that may predate a GRANT.
type stampConnector struct {
	driver.Connector
	sink *MySQLSink
}

// Connect opens a connection and records its serial.
func (c stampConnector) Connect(ctx context.Context) (driver.Conn, error) {
	// Taken before the handshake, which is when the server reads the
	// account's privileges.
	serial := c.sink.opened.Add(1)
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	c.sink.remember(conn, serial)
	return conn, nil
}

// settle kills the server threads of INSERTs whose outcome is unknown and
// waits until they are gone, so that what the table holds afterwards is
// final: a statement the server was still running (waiting for a lock)
// is rolled back, and bytes still in the network reach a closed socket.
// Without it, a check could miss a row that such a statement writes a
// moment later, and the row would be written twice.
func (s *MySQLSink) settle(ctx context.Context) error {
	s.connMu.Lock()
	ids := make([]uint64, 0, len(s.suspects))
	for id := range s.suspects {
		ids = append(ids, id)
	}
	s.connMu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	for _, id := range ids {
		err := s.db.WithContext(ctx).Exec(fmt.Sprintf("KILL CONNECTION %d", id)).Error
		var me *mysql.MySQLError
		switch {
		case err == nil:
		case errors.As(err, &me) && me.Number == 1094:
			// Unknown thread: it has ended already.
		case errors.As(err, &me):
			// The server will not let us (a proxy in front of it, a
			// restricted account): check without this safeguard.
			s.killWarn.Do(func() {
				s.log.Warn("crm: cannot end the connection of an insert whose outcome is unknown; a statement the server is still running could write its row twice",
					"err", errText(err))
			})
		default:
			return err
		}
	}
	for {
		var alive int64
		err := s.db.WithContext(ctx).Raw("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID IN ?", ids).Scan(&alive).Error
		if err != nil {
			return err
		}
		if alive == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.connMu.Lock()
	for _, id := range ids {
		delete(s.suspects, id)
	}
	s.connMu.Unlock()
	return nil
}

// Existing reports which rows the table already holds. The CRM table has
// no unique key, so a row is recognised by user, direction, time and text.
func (s *MySQLSink) Existing(ctx context.Context, rows []Row) ([]bool, error) {
	out := make([]bool, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	s.fit(rows)
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("SELECT user_id, direction, created_at, message FROM ")
	b.WriteString(s.table)
	b.WriteString(" WHERE (user_id, direction, created_at) IN (")
	args := make([]any, 0, len(rows)*3)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?)")
		args = append(args, rows[i].UserID, rows[i].Direction, rows[i].CreatedAt)
	}
	b.WriteString(")")
	var found []struct {
		UserID    string
		Direction string
		CreatedAt time.Time
		Message   string
	}
	if err := s.db.WithContext(ctx).Raw(b.String(), args...).Scan(&found).Error; err != nil {
		return nil, err
	}
	type key struct {
		user, dir, msg string
		at             int64
	}
	have := make(map[key]int, len(found))
	for _, f := range found {
		have[key{f.UserID, f.Direction, f.Message, f.CreatedAt.Unix()}]++
	}
	for i, r := range rows {
		k := key{r.UserID, r.Direction, r.Message, r.CreatedAt.Unix()}
		if have[k] > 0 {
			have[k]--
			out[i] = true
		}
	}
	return out, nil
}

// driverLogger routes go-sql-driver/mysql's own complaints (for example
// "unexpected EOF" when a connection dies) to slog at debug: the mirror
// logs the state change itself, once.
type driverLogger struct{ log *slog.Logger }

func (d driverLogger) Print(v ...any) {
	d.log.Debug("mysql driver", "detail", fmt.Sprint(v...))
}

// errText shortens an error for a message's mirror_last_error and logs.
func errText(err error) string {
	if err == nil {
		return ""
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return fmt.Sprintf("mysql %d: %s", me.Number, me.Message)
	}
	return err.Error()
}
