// The bench's flow source: serves observer.Observer/GetFlows from pre-serialized GetFlowsResponse
// frames, so the bridge's client, not the source, is what the bench measures. A Python gRPC server
// tops out near 20k messages/s on these machines; this one sends well over 150k/s on one core.
//
// Built by hubble_bridge/bench/source.py with Debian's golang-go and golang-google-grpc-dev
// (GOPATH mode, no downloads). No generated code: a raw codec passes bytes through, and the
// only request field read is GetFlowsRequest.number (field 1), decoded by hand.
//
//	flowsource -frames FILE [-listen 127.0.0.1:0]   serve; prints the bound address on stdout
//	                                                (-listen unix:///path: on a unix socket)
//	flowsource -drain ADDR -n N                     read N messages; prints "count seconds"
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
)

type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) String() string { return "proto" }
func (rawCodec) Name() string   { return "proto" }

var frames [][]byte

// requestNumber returns GetFlowsRequest.number, skipping every other field.
func requestNumber(req []byte) uint64 {
	for i := 0; i < len(req); {
		tag, n := binary.Uvarint(req[i:])
		if n <= 0 {
			return 0
		}
		i += n
		switch tag & 7 {
		case 0:
			v, m := binary.Uvarint(req[i:])
			if m <= 0 {
				return 0
			}
			i += m
			if tag>>3 == 1 {
				return v
			}
		case 1:
			i += 8
		case 2:
			l, m := binary.Uvarint(req[i:])
			if m <= 0 {
				return 0
			}
			i += m + int(l)
		case 5:
			i += 4
		default:
			return 0
		}
	}
	return 0
}

// getFlows sends `number` frames (all of them once when number is 0), cycling, then ends the stream.
func getFlows(_ interface{}, stream grpc.ServerStream) error {
	var req []byte
	if err := stream.RecvMsg(&req); err != nil {
		return err
	}
	count := requestNumber(req)
	if count == 0 {
		count = uint64(len(frames))
	}
	total := uint64(len(frames))
	for i := uint64(0); i < count; i++ {
		if err := stream.SendMsg(frames[i%total]); err != nil {
			return err
		}
	}
	return nil
}

func serverStatus(_ interface{}, _ context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
	var req []byte
	if err := dec(&req); err != nil {
		return nil, err
	}
	return []byte{}, nil // an empty ServerStatusResponse
}

var observerService = grpc.ServiceDesc{
	ServiceName: "observer.Observer",
	HandlerType: (*interface{})(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "ServerStatus", Handler: serverStatus}},
	Streams:     []grpc.StreamDesc{{StreamName: "GetFlows", Handler: getFlows, ServerStreams: true}},
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "flowsource:", err)
	os.Exit(2)
}

func serve(listen, path string) {
	data, err := ioutil.ReadFile(path)
	if err != nil {
		fail(err)
	}
	for len(data) >= 4 {
		n := binary.BigEndian.Uint32(data)
		if uint64(len(data)) < 4+uint64(n) {
			fail(fmt.Errorf("%s: truncated frame", path))
		}
		frames = append(frames, data[4:4+n])
		data = data[4+n:]
	}
	if len(frames) == 0 {
		fail(fmt.Errorf("%s: no frames", path))
	}
	// unix:///path serves on a unix socket, as a node's Hubble server does (hubble.sock).
	network, address := "tcp", listen
	if strings.HasPrefix(listen, "unix://") {
		network, address = "unix", strings.TrimPrefix(listen, "unix://")
	}
	lis, err := net.Listen(network, address)
	if err != nil {
		fail(err)
	}
	server := grpc.NewServer(grpc.CustomCodec(rawCodec{}))
	server.RegisterService(&observerService, struct{}{})
	if network == "unix" {
		fmt.Println(listen)
	} else {
		fmt.Println(lis.Addr().String())
	}
	if err := server.Serve(lis); err != nil {
		fail(err)
	}
}

func drain(addr string, n uint64) {
	conn, err := grpc.Dial(addr, grpc.WithInsecure(), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	stream, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, "/observer.Observer/GetFlows")
	if err != nil {
		fail(err)
	}
	req := binary.AppendUvarint([]byte{0x08}, n) // number = n
	req = append(req, 0x48, 0x01)                // first = true
	if err := stream.SendMsg(req); err != nil {
		fail(err)
	}
	if err := stream.CloseSend(); err != nil {
		fail(err)
	}
	start := time.Now()
	count := 0
	for {
		var msg []byte
		if err := stream.RecvMsg(&msg); err == io.EOF {
			break
		} else if err != nil {
			fail(err)
		}
		count++
	}
	fmt.Printf("%d %.6f\n", count, time.Since(start).Seconds())
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	path := flag.String("frames", "", "file of 4-byte big-endian length-prefixed GetFlowsResponse messages")
	drainAddr := flag.String("drain", "", "read from this address instead of serving")
	n := flag.Uint64("n", 100000, "messages to read with -drain")
	flag.Parse()
	if *drainAddr != "" {
		drain(*drainAddr, *n)
		return
	}
	serve(*listen, *path)
}
