// Package webtest drives a real browser (Debian's chromium, over the
// DevTools protocol) for the tests of Kiln's web pages, in-process ones and
// those against real coordinator processes.
package webtest

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// Browser is a headless chromium and a DevTools connection to its page.
type Browser struct {
	ws      *websocket.Conn
	mu      sync.Mutex
	next    int
	replies map[int]chan cdpMessage
	logs    []string // console errors, CSP reports and exceptions
}

type cdpMessage struct {
	ID     int             `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// StartBrowser starts Debian's chromium (bin) headless with a profile of
// its own and connects to its page; the test's cleanup stops it.
func StartBrowser(t *testing.T, bin string) *Browser {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir="+dir,
		"--remote-debugging-port=0", "--remote-allow-origins=http://127.0.0.1", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	// Chromium writes its DevTools port to the profile once it listens.
	var port string
	deadline := time.Now().Add(60 * time.Second)
	for port == "" {
		select {
		case <-exited:
			t.Fatalf("chromium exited before it listened:\n%s", stderr.String())
		default:
		}
		if b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort")); err == nil && strings.Contains(string(b), "\n") {
			port = strings.SplitN(string(b), "\n", 2)[0]
		} else if time.Now().After(deadline) {
			t.Fatalf("chromium did not open its DevTools port within 60s:\n%s", stderr.String())
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	resp, err := http.Get("http://127.0.0.1:" + port + "/json/list")
	if err != nil {
		t.Fatal(err)
	}
	var targets []struct{ Type, WebSocketDebuggerURL string }
	err = json.NewDecoder(resp.Body).Decode(&targets)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("chromium's target list: %v", err)
	}
	var wsURL string
	for _, tg := range targets {
		if tg.Type == "page" {
			wsURL = tg.WebSocketDebuggerURL
		}
	}
	if wsURL == "" {
		t.Fatalf("chromium has no page target: %+v", targets)
	}
	ws, err := websocket.Dial(wsURL, "", "http://127.0.0.1")
	if err != nil {
		t.Fatalf("connect to chromium's page: %v", err)
	}
	ws.MaxPayloadBytes = 64 << 20
	t.Cleanup(func() { ws.Close() })
	b := &Browser{ws: ws, replies: map[int]chan cdpMessage{}}
	go b.read()
	return b
}

func (b *Browser) read() {
	for {
		var m cdpMessage
		if err := websocket.JSON.Receive(b.ws, &m); err != nil {
			b.mu.Lock()
			for id, ch := range b.replies {
				close(ch)
				delete(b.replies, id)
			}
			b.mu.Unlock()
			return
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch := b.replies[m.ID]; ch != nil {
				ch <- m
				delete(b.replies, m.ID)
			}
		} else if s := problem(m); s != "" {
			b.logs = append(b.logs, s)
		}
		b.mu.Unlock()
	}
}

// problem says what is wrong in an event: a console or log error (CSP
// violations are reported as such) or an uncaught exception.
func problem(m cdpMessage) string {
	switch m.Method {
	case "Log.entryAdded":
		var p struct {
			Entry struct{ Level, Source, Text, URL string }
		}
		_ = json.Unmarshal(m.Params, &p)
		if p.Entry.Level == "error" || strings.Contains(p.Entry.Text, "Content Security Policy") {
			return p.Entry.Source + ": " + p.Entry.Text + " " + p.Entry.URL
		}
	case "Runtime.consoleAPICalled":
		var p struct{ Type string }
		_ = json.Unmarshal(m.Params, &p)
		if p.Type == "error" {
			return "console error: " + string(m.Params)
		}
	case "Runtime.exceptionThrown":
		return "exception: " + string(m.Params)
	}
	return ""
}

// Violations are the console errors, CSP reports and uncaught exceptions
// the page has had.
func (b *Browser) Violations() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.logs...)
}

// Call sends a DevTools method and returns its result.
func (b *Browser) Call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	ch := make(chan cdpMessage, 1)
	b.mu.Lock()
	b.next++
	id := b.next
	b.replies[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if err := websocket.JSON.Send(b.ws, msg); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the connection to chromium closed", method)
		}
		if m.Error != nil {
			t.Fatalf("%s: %s", method, m.Error.Message)
		}
		return m.Result
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no answer from chromium within 30s", method)
	}
	return nil
}

// Screenshot saves the page as a PNG image, 1200 pixels wide.
func (b *Browser) Screenshot(t *testing.T, file string) {
	t.Helper()
	b.Call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": false})
	res := b.Call(t, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
	var r struct{ Data []byte }
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, r.Data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Eval evaluates a JavaScript expression in the page and returns its value.
func (b *Browser) Eval(t *testing.T, expr string) any {
	t.Helper()
	res := b.Call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	var r struct {
		Result           struct{ Value any }
		ExceptionDetails json.RawMessage
	}
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatal(err)
	}
	if r.ExceptionDetails != nil {
		return "exception: " + string(r.ExceptionDetails)
	}
	return r.Result.Value
}

// WaitFor evaluates expr until ok accepts its value, for up to 20s.
func (b *Browser) WaitFor(t *testing.T, expr string, ok func(any) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := b.Eval(t, expr)
		if ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %s; it is %v", expr, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
