package forgeext

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/xraph/forge"
	"github.com/xraph/vessel"
	"gopkg.in/yaml.v3"
)

// Version is the extension's version as Forge reports it.
const Version = "0.1.0"

// Extension is the Forge extension. Create it with NewExtension and
// register it with app.RegisterExtension.
type Extension struct {
	*forge.BaseExtension

	opts []Option
	svc  *Service
}

// NewExtension returns the extension, configured by opts over the app's
// extensions.consensus configuration.
func NewExtension(opts ...Option) *Extension {
	return &Extension{
		BaseExtension: forge.NewBaseExtension(ConfigKey, Version, "Raft consensus: leader election, a replicated log and key-value state"),
		opts:          opts,
		svc:           NewService(Config{}, slog.Default().With("component", "consensus")),
	}
}

// Register resolves the configuration (failing with an error naming the
// key if it is invalid) and registers the *Service in the app's container,
// by type and as "consensus".
func (e *Extension) Register(app forge.App) error {
	if err := e.BaseExtension.Register(app); err != nil {
		return err
	}
	var fromYAML Config
	if cm := app.Config(); cm != nil {
		if section := cm.GetSection("extensions." + ConfigKey); len(section) > 0 {
			raw, err := yaml.Marshal(section)
			if err != nil {
				return fmt.Errorf("consensus: read extensions.%s: %w", ConfigKey, err)
			}
			if fromYAML, err = parseYAML(raw); err != nil {
				return err
			}
		}
	}
	cfg, err := resolve(fromYAML, e.opts)
	if err != nil {
		return err
	}
	svc := e.svc
	svc.configure(cfg)
	if err := vessel.ProvideValue[*Service](app.Container(), svc, vessel.WithAliases(ConfigKey)); err != nil {
		return fmt.Errorf("consensus: register service: %w", err)
	}
	lc := &LeadershipChecker{svc: svc}
	if err := vessel.ProvideValue[*LeadershipChecker](app.Container(), lc, vessel.WithAliases(ConfigKey+":leadership")); err != nil {
		return fmt.Errorf("consensus: register leadership checker: %w", err)
	}
	if a := cfg.AdminAPI; a.Enabled == nil || *a.Enabled {
		if err := app.Router().Handle(a.PathPrefix, adminMount{svc}); err != nil {
			return fmt.Errorf("consensus: mount the admin API at %s: %w", a.PathPrefix, err)
		}
	}
	return nil
}

// adminMount serves the admin API on the app's router once the service
// runs (503 before).
type adminMount struct{ svc *Service }

func (m adminMount) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, err := m.svc.adminHandler()
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	h.ServeHTTP(w, r)
}

// LeadershipChecker answers whether this node leads, for code that only
// needs that (a job that runs on the leader alone). It is registered as
// "consensus:leadership".
type LeadershipChecker struct{ svc *Service }

// IsLeader reports whether this node is the leader.
func (c *LeadershipChecker) IsLeader() bool { return c.svc.IsLeader() }

// GetLeader returns the leader's name as this node knows it ("": none).
func (c *LeadershipChecker) GetLeader() string { return c.svc.GetLeader() }

// LeaderURL returns the leader's base URL ("" when unknown), where
// requests this node refuses should go.
func (c *LeadershipChecker) LeaderURL() string { return c.svc.LeaderURL() }

// Service returns the service the checker asks.
func (c *LeadershipChecker) Service() *Service { return c.svc }

// RequireLeader returns nil on the leader and a *NotLeaderError naming the
// leader elsewhere.
func (c *LeadershipChecker) RequireLeader() error {
	if c.svc.IsLeader() {
		return nil
	}
	return c.svc.notLeader(c.svc.LeaderID())
}

// Service returns the extension's service. It exists from NewExtension
// on, so routes and middleware can be set up before the app starts; it
// runs once the app has started.
func (e *Extension) Service() *Service { return e.svc }

// Start starts the service: the node joins the cluster.
func (e *Extension) Start(ctx context.Context) error {
	if err := e.svc.Start(ctx); err != nil {
		return err
	}
	e.MarkStarted()
	return nil
}

// Stop stops the service.
func (e *Extension) Stop(ctx context.Context) error {
	e.MarkStopped()
	return e.svc.Stop(ctx)
}

// Health is the extension's Forge health check: an error when the service
// is not running, knows no leader or has no quorum (Service.HealthCheck).
func (e *Extension) Health(ctx context.Context) error {
	return e.svc.HealthCheck(ctx)
}
