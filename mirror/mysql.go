package mirror

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
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

	// threads maps a pooled connection (the driver's, as database/sql
	// hands it out) to its server thread id, so that the id costs one
	// query per connection, not per INSERT.
	threadMu sync.Mutex
	threads  map[any]uint64
	// suspects are the server threads of INSERTs whose outcome is
	// unknown: the server may still be running them (a lock wait) or
	// their bytes may still be on the way. They are killed, and waited
	// for, before the next check of what the table holds.
	suspects map[uint64]bool
	killWarn sync.Once
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
	db, err := gorm.Open(gormmysql.New(gormmysql.Config{
		DSN:                       c.DSN(),
		SkipInitializeWithVersion: true,
	}), &gorm.Config{
		DisableAutomaticPing:   true,
		SkipDefaultTransaction: true,
		Logger:                 logger.Discard,
	})
	if err != nil {
		return nil, fmt.Errorf("open crm %s: %w", c.Redacted(), err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("open crm %s: %w", c.Redacted(), err)
	}
	workers := max(c.Workers, 1)
	sqlDB.SetMaxOpenConns(workers + 2)
	sqlDB.SetMaxIdleConns(workers + 2)
	// Well below MySQL's wait_timeout (8 h by default, often 60-600 s on
	// shared hosting), so the pool never hands out a connection the server
	// has already closed.
	sqlDB.SetConnMaxLifetime(3 * time.Minute)
	sqlDB.SetConnMaxIdleTime(time.Minute)
	return &MySQLSink{
		db:       db,
		sqlDB:    sqlDB,
		table:    "`" + c.Table + "`",
		log:      c.Logger,
		cols:     defaultColumns,
		threads:  map[any]uint64{},
		suspects: map[uint64]bool{},
	}, nil
}

// Close closes the pool.
func (s *MySQLSink) Close() error { return s.sqlDB.Close() }

// Ping checks the connection, reads the table's columns once, and proves
// the table is there.
func (s *MySQLSink) Ping(ctx context.Context) error {
	err := s.db.WithContext(ctx).Connection(func(tx *gorm.DB) error {
		// Learning the connection's thread id here saves the first INSERT
		// on it a round trip.
		if _, err := s.threadID(tx); err != nil {
			return err
		}
		return tx.Exec("SELECT 1 FROM " + s.table + " LIMIT 0").Error
	})
	if err != nil {
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
	return s.db.WithContext(ctx).Connection(func(tx *gorm.DB) error {
		id, err := s.threadID(tx)
		if err != nil {
			return err
		}
		if conn, ok := tx.Statement.ConnPool.(*sql.Conn); ok {
			// Straight to the connection: GORM would rebuild the statement
			// around every placeholder (thousands of allocations a batch)
			// to hand the driver the same SQL and arguments.
			_, err = conn.ExecContext(ctx, b.String(), args...)
		} else {
			err = tx.Exec(b.String(), args...).Error
		}
		if _, unknown := Classify(err); err != nil && unknown && id != 0 {
			s.threadMu.Lock()
			s.suspects[id] = true
			s.threadMu.Unlock()
		}
		return err
	})
}

// maxThreads bounds the thread id cache; past it the cache starts again
// (connections come and go, and a miss costs one query).
const maxThreads = 64

// threadID returns the server thread id of tx's dedicated connection.
func (s *MySQLSink) threadID(tx *gorm.DB) (uint64, error) {
	conn, ok := tx.Statement.ConnPool.(*sql.Conn)
	if !ok {
		return 0, nil
	}
	var key any
	_ = conn.Raw(func(dc any) error { key = dc; return nil })
	s.threadMu.Lock()
	id, ok := s.threads[key]
	s.threadMu.Unlock()
	if ok {
		return id, nil
	}
	if err := tx.Raw("SELECT CONNECTION_ID()").Scan(&id).Error; err != nil {
		return 0, err
	}
	s.threadMu.Lock()
	if len(s.threads) >= maxThreads {
		clear(s.threads)
	}
	s.threads[key] = id
	s.threadMu.Unlock()
	return id, nil
}

// settle kills the server threads of INSERTs whose outcome is unknown and
// waits until they are gone, so that what the table holds afterwards is
// final: a statement the server was still running (waiting for a lock)
// is rolled back, and bytes still in the network reach a closed socket.
// Without it, a check could miss a row that such a statement writes a
// moment later, and the row would be written twice.
func (s *MySQLSink) settle(ctx context.Context) error {
	s.threadMu.Lock()
	ids := make([]uint64, 0, len(s.suspects))
	for id := range s.suspects {
		ids = append(ids, id)
	}
	s.threadMu.Unlock()
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
	s.threadMu.Lock()
	for _, id := range ids {
		delete(s.suspects, id)
	}
	s.threadMu.Unlock()
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
