// Package ec2 is a local Amazon EC2 endpoint for tests: an HTTP server on
// loopback that speaks the EC2 Query protocol (API version 2016-11-15) to the
// real aws-sdk-go-v2 client, keeps instances in memory and injects faults.
// See README.md beside this file for what it serves and how to use it.
package ec2

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Server is one running endpoint. It is safe for concurrent use.
type Server struct {
	opts Options
	ln   net.Listener
	http *http.Server

	mu        sync.Mutex
	seq       int
	instances []*Instance            // in launch order
	byID      map[string]*Instance   // instance id → instance
	tokens    map[string]tokenRecord // client token → first result
	images    map[string]Image
	types     []InstanceType
	faults    map[string][]*Fault // action → faults, first match wins
	requests  map[string][]url.Values
}

type tokenRecord struct {
	paramsKey string
	instance  *Instance
}

// Options configures a Server. The zero value gives the defaults documented on each field.
type Options struct {
	// PendingDescribes is how many DescribeInstances answers show a new
	// instance as pending before it is running (default 0: running on the first describe).
	PendingDescribes int
	// PendingFor is how long after launch an instance stays pending at least (default 0).
	PendingFor time.Duration
	// ShuttingDownDescribes is how many DescribeInstances answers show a
	// terminated instance as shutting-down before it is terminated (default 1).
	ShuttingDownDescribes int
	// PageSize caps every paginated answer, whatever MaxResults asks (0: no cap).
	PageSize int
	// Images are the AMIs the endpoint knows (default: DefaultImage only).
	Images []Image
	// InstanceTypes is the instance-type catalogue (default: DefaultInstanceTypes).
	InstanceTypes []InstanceType
	// Logf, when set, is called once per request with its action and outcome.
	Logf func(format string, args ...any)
}

// Image is an AMI the endpoint knows.
type Image struct {
	ID             string
	RootDeviceName string
	// SizeGiB is the size of the root snapshot.
	SizeGiB int32
}

// DefaultImage is the AMI every endpoint knows unless Options.Images is set.
var DefaultImage = Image{ID: "ami-0abcdef1234567890", RootDeviceName: "/dev/xvda", SizeGiB: 8}

// InstanceType is one entry of the instance-type catalogue.
type InstanceType struct {
	Name      string
	VCPUs     int64
	MemoryMiB int64
	GPUs      int64
	// SevSnp is true when the type supports AMD SEV-SNP.
	SevSnp bool
}

// DefaultInstanceTypes is the catalogue served unless Options.InstanceTypes is set.
func DefaultInstanceTypes() []InstanceType {
	return []InstanceType{
		{Name: "m6a.large", VCPUs: 2, MemoryMiB: 8192, SevSnp: true},
		{Name: "m6a.xlarge", VCPUs: 4, MemoryMiB: 16384, SevSnp: true},
		{Name: "m6a.2xlarge", VCPUs: 8, MemoryMiB: 32768, SevSnp: true},
		{Name: "c6a.large", VCPUs: 2, MemoryMiB: 4096, SevSnp: true},
		{Name: "c6a.xlarge", VCPUs: 4, MemoryMiB: 8192, SevSnp: true},
		{Name: "r6a.large", VCPUs: 2, MemoryMiB: 16384, SevSnp: true},
		{Name: "m5.large", VCPUs: 2, MemoryMiB: 8192},
		{Name: "g5.xlarge", VCPUs: 4, MemoryMiB: 16384, GPUs: 1},
	}
}

// Fault makes the endpoint misbehave on one action.
type Fault struct {
	// Code is the EC2 error code to answer with ("" for none). Its HTTP
	// status is Status, or the one EC2 uses for the code (see StatusOf).
	Code    string
	Message string
	Status  int
	// InstanceType restricts a RunInstances fault to requests for that type.
	InstanceType string
	// Latency delays the answer (the action's effect happens after the delay).
	Latency time.Duration
	// DropAfter carries out the action, then closes the connection without
	// an answer, as a network failure after the cloud did the work would.
	DropAfter bool
	// Times is how many matching requests the fault hits; 0 or less: all of them.
	Times int

	hits int
}

// StatusOf is the HTTP status EC2 answers an error code with: 503 for
// request throttling, 500 for server-side errors such as capacity, 400 otherwise.
func StatusOf(code string) int {
	switch code {
	case "RequestLimitExceeded", "Unavailable", "ServiceUnavailable":
		return http.StatusServiceUnavailable
	case "InternalError", "InsufficientInstanceCapacity", "InsufficientHostCapacity",
		"InsufficientCapacity", "InsufficientReservedInstanceCapacity":
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

// Start listens on 127.0.0.1 on an ephemeral port and serves until Close.
func Start(opts Options) (*Server, error) {
	if opts.ShuttingDownDescribes == 0 {
		opts.ShuttingDownDescribes = 1
	}
	if opts.Images == nil {
		opts.Images = []Image{DefaultImage}
	}
	if opts.InstanceTypes == nil {
		opts.InstanceTypes = DefaultInstanceTypes()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ec2 endpoint: listen: %w", err)
	}
	s := &Server{
		opts:     opts,
		ln:       ln,
		byID:     map[string]*Instance{},
		tokens:   map[string]tokenRecord{},
		images:   map[string]Image{},
		types:    append([]InstanceType(nil), opts.InstanceTypes...),
		faults:   map[string][]*Fault{},
		requests: map[string][]url.Values{},
	}
	for _, im := range opts.Images {
		s.images[im.ID] = im
	}
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

// URL is the endpoint's base URL, for the SDK's BaseEndpoint.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Close stops the server and closes every connection.
func (s *Server) Close() error { return s.http.Close() }

// Inject adds a fault to action ("RunInstances", "DescribeInstances", ...).
// Faults of one action are tried in the order added; the first that matches a request applies.
func (s *Server) Inject(action string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ff := f
	s.faults[action] = append(s.faults[action], &ff)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[string][]*Fault{}
}

// Requests returns the form parameters of every request of action received so far, in order.
func (s *Server) Requests(action string) []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]url.Values, len(s.requests[action]))
	copy(out, s.requests[action])
	return out
}

// Instances returns a copy of every instance ever launched, in launch order.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Instance, 0, len(s.instances))
	for _, in := range s.instances {
		out = append(out, in.clone())
	}
	return out
}

// ServeHTTP implements the EC2 Query protocol: a POST of a form with Action and Version.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := s.newRequestID()
	w.Header().Set("x-amzn-RequestId", reqID)
	if r.Method != http.MethodPost {
		s.writeError(w, reqID, &apiError{Code: "InvalidHttpRequest", Message: "The EC2 Query API takes POST requests", Status: http.StatusMethodNotAllowed})
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		s.writeError(w, reqID, &apiError{Code: "AuthFailure", Message: "AWS was not able to validate the provided access credentials"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		s.writeError(w, reqID, &apiError{Code: "MalformedQueryString", Message: err.Error()})
		return
	}
	form := r.PostForm
	action := form.Get("Action")
	if v := form.Get("Version"); v != APIVersion {
		s.writeError(w, reqID, &apiError{Code: "InvalidParameterValue", Message: fmt.Sprintf("Version %q is not supported; use %s", v, APIVersion)})
		return
	}
	s.mu.Lock()
	s.requests[action] = append(s.requests[action], form)
	fault := s.matchFault(action, form)
	s.mu.Unlock()

	if fault != nil && fault.Latency > 0 {
		t := time.NewTimer(fault.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if fault != nil && fault.Code != "" {
		st := fault.Status
		if st == 0 {
			st = StatusOf(fault.Code)
		}
		msg := fault.Message
		if msg == "" {
			msg = "injected fault " + fault.Code
		}
		s.logf("%s %s -> injected %s", reqID, action, fault.Code)
		s.writeError(w, reqID, &apiError{Code: fault.Code, Message: msg, Status: st})
		return
	}

	body, aerr := s.dispatch(action, form, reqID)
	if aerr != nil {
		s.logf("%s %s -> %s", reqID, action, aerr.Code)
		s.writeError(w, reqID, aerr)
		return
	}
	if fault != nil && fault.DropAfter {
		s.logf("%s %s -> done, connection dropped", reqID, action)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	s.logf("%s %s -> ok", reqID, action)
	out, err := xml.Marshal(body)
	if err != nil {
		s.writeError(w, reqID, &apiError{Code: "InternalError", Message: err.Error(), Status: http.StatusInternalServerError})
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

// matchFault returns the first fault of action matching form and counts the hit. Callers hold s.mu.
func (s *Server) matchFault(action string, form url.Values) *Fault {
	for _, f := range s.faults[action] {
		if f.InstanceType != "" && form.Get("InstanceType") != f.InstanceType {
			continue
		}
		if f.Times > 0 && f.hits >= f.Times {
			continue
		}
		f.hits++
		c := *f
		return &c
	}
	return nil
}

func (s *Server) dispatch(action string, form url.Values, reqID string) (any, *apiError) {
	switch action {
	case "RunInstances":
		return s.runInstances(form, reqID)
	case "DescribeInstances":
		return s.describeInstances(form, reqID)
	case "TerminateInstances":
		return s.terminateInstances(form, reqID)
	case "CreateTags":
		return s.createTags(form, reqID)
	case "DescribeImages":
		return s.describeImages(form, reqID)
	case "DescribeInstanceTypes":
		return s.describeInstanceTypes(form, reqID)
	case "":
		return nil, &apiError{Code: "MissingAction", Message: "The request must contain the parameter Action"}
	}
	return nil, &apiError{Code: "InvalidAction", Message: fmt.Sprintf("The action %s is not valid for this web service.", action)}
}

// apiError is an EC2 error answer.
type apiError struct {
	Code    string
	Message string
	Status  int
}

func errorf(code, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (s *Server) writeError(w http.ResponseWriter, reqID string, e *apiError) {
	st := e.Status
	if st == 0 {
		st = StatusOf(e.Code)
	}
	out, _ := xml.Marshal(xmlErrorResponse{Errors: []xmlErr{{Code: e.Code, Message: e.Message}}, RequestID: reqID})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(st)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

func (s *Server) newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// randomID makes an EC2-style id: prefix, '-', 17 hex digits.
func randomID(prefix string) string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])[:17]
}
