# rpcgate: one plain GNU Makefile (automatic dependencies, no autotools).
#
#   make deps     install the Debian packages the build and tests need
#   make          build/rpcgate: the static musl binary
#   make check    the house checks (layers), then every test tier: fuzz
#                 smoke, unit, integration, HTTP (test-http), overload
#                 (test-overload), TLS (test-tls), etcd (test-etcd), gRPC
#                 (test-grpc), the README's tour
#                 (test-docs),
#                 the container (test-image) and the VMs (test-rxe)
#   make layers   scripts/check-layers: no include up or beside a wing, no
#                 C file over 1,500 lines (and its own test)
#   make run      the main job: the appliance in a VM (see README.md)
#   make image    build/vm/: kernel + initramfs (image/mkvm)
#   make kernel   build/vm-min/: the same on a minimal kernel (optional)
#   make oci      build/rpcgate-oci.tar: the container image (image/mkoci)
#   make test-rxe the VM and soft-RoCE tier (tests/rxe/test-vm)
#   make test-tls TLS with openssl, curl and nginx (tests/tls/test-tls)
#   make test-etcd  etcd naming, registration, live routes (tests/etcd/test-etcd)
#   make test-grpc  gRPC against grpcio's client (tests/grpc/test-grpc)
#   make bench    scripts/bench-echo: rpcgate against a raw TCP ping-pong
#   make bench-http  scripts/bench-http: HTTP/JSON against nginx (wrk)
#   make bench-tls   scripts/bench-tls: TLS handshakes and HTTPS against nginx
#   make bench-grpc  scripts/bench-grpc: gRPC against nghttpd and grpcio (h2load)
#   make bench-overload  scripts/bench-overload: the limiter against fixed ones
#   make soak     scripts/soak: 30 minutes of load and faults (SOAK_S)
#
# Two builds of the same sources:
#   build/musl/   musl-gcc, static, linked with Debian's static rdma-core,
#                 libnl, protobuf-c, zlib, c-ares and OpenSSL archives
#                 -> build/rpcgate
#   build/host/   the host's gcc and glibc with ASan+UBSan, for unit tests

SHELL := /bin/bash
.DEFAULT_GOAL := all

BUILD := build
# brpc's recorded bytes, in the shared folder beside the project.
VECTORS := $(abspath ../shared/vectors)
LIBDIR := /usr/lib/x86_64-linux-gnu

# Debian packages: build, static archives, tests.
DEPS_PKGS := gcc make musl-tools libibverbs-dev librdmacm-dev \
	libnl-3-dev libnl-route-3-dev libprotobuf-c-dev protobuf-c-compiler \
	zlib1g-dev libcmocka-dev ibverbs-providers clang libclang-rt-14-dev \
	python3 python3-snappy qemu-system-x86 runc umoci skopeo \
	libc-ares-dev dnsmasq-base curl iproute2 libssl-dev openssl libnghttp2-dev

MUSL_CC := musl-gcc
HOST_CC := gcc

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wno-unused-parameter -Werror
# protoc-c output lands in build/gen/<folder of the .proto>/.
PROTOS := $(wildcard net/*/proto/*.proto app/proto/*.proto)
# The compiled-in services also carry their descriptor set (what
# `protoc --include_imports -o` writes) as bytes, for HTTP/JSON and the
# /protobufs pages: build/gen/app/proto/NAME.desc.c defines
# NAME_proto_desc[] and NAME_proto_desc_len.
DESC_PROTOS := $(wildcard app/proto/*.proto)
GEN_SRCS := $(PROTOS:%.proto=$(BUILD)/gen/%.pb-c.c) \
	$(DESC_PROTOS:%.proto=$(BUILD)/gen/%.desc.c)
GEN_HDRS := $(PROTOS:%.proto=$(BUILD)/gen/%.pb-c.h)
# The tests' own: kitchen.proto of brpc's HTTP vectors (every field
# type), as generated code (an independent check of json_pb) and as a
# descriptor set (what `echo --descriptor_set` loads).
KITCHEN_PROTO := $(VECTORS)/http/kitchen.proto
TEST_GEN := $(BUILD)/gen/test
TEST_GEN_OBJS := $(BUILD)/host/gen/test/kitchen.pb-c.o
TEST_DESCS := $(TEST_GEN)/kitchen.desc
GEN_INC := $(addprefix -I$(BUILD)/gen/,$(sort $(dir $(PROTOS))))

CFLAGS_COMMON := -std=gnu11 -g -pthread $(WARN) -Inet -Irdma -Iapp \
	$(GEN_INC) -MMD -MP
# The binary is optimised whole (link-time): calls across files inline.
# 5% fewer instructions per call (callgrind, TCP echo at c=1) and 18%
# less user time per RDMA call under QEMU's TCG, where every return is
# an indirect jump it looks up.
MUSL_LTO := -flto=auto
MUSL_CFLAGS := $(CFLAGS_COMMON) -O2 $(MUSL_LTO) -isystem $(BUILD)/musl-inc \
	-DRDMA_STATIC_PROVIDERS=rxe
HOST_CFLAGS := $(CFLAGS_COMMON) -O1 -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=all

# The static archives, by full path: -L on the glibc directory would drag
# glibc's own libc.a into a musl link.  Order: users before providers.
STATIC_LIBS := $(addprefix $(LIBDIR)/,librdmacm.a librxe-rdmav34.a \
	libibverbs.a libnl-route-3.a libnl-3.a libprotobuf-c.a libz.a \
	libcares.a libnghttp2.a libssl.a libcrypto.a)
# musl-gcc sees only musl's headers; these are the few foreign headers
# the build includes, linked into one directory so glibc's never leak in.
MUSL_INC_LINKS := infiniband rdma protobuf-c linux asm-generic zlib.h zconf.h \
	ares.h ares_build.h ares_rules.h ares_version.h ares_dns.h ares_nameser.h \
	nghttp2

# net/ is in wings, one folder each, lowest first (net/README.md):
# base <- codec <- rpc <- cluster.  A wing's headers are included as
# "wing/name.h" from outside it, and as "name.h" from inside.
NET_WINGS := base codec rpc cluster
NET_SRCS := $(foreach w,$(NET_WINGS),$(wildcard net/$(w)/*.c))
RDMA_SRCS := $(wildcard rdma/*.c)
APP_SRCS := $(wildcard app/*.c)
ALL_SRCS := $(NET_SRCS) $(RDMA_SRCS) $(APP_SRCS)
# Generated code is compiled without our warning set: it is protoc-c's.
GEN_CFLAGS_FILTER := -Wshadow -Wstrict-prototypes -Wmissing-prototypes

MUSL_OBJS := $(ALL_SRCS:%.c=$(BUILD)/musl/%.o) \
	$(GEN_SRCS:$(BUILD)/gen/%.c=$(BUILD)/musl/gen/%.o)
# Host library for tests: everything but main() and the libc shims (the
# fortify entry points, strlen, ucontext).
HOST_LIB_SRCS := $(filter-out app/main.c app/musl_strlen.c app/musl_ucontext.c \
	rdma/glibc_fortify.c,$(ALL_SRCS))
HOST_LIB_OBJS := $(HOST_LIB_SRCS:%.c=$(BUILD)/host/%.o) \
	$(GEN_SRCS:$(BUILD)/gen/%.c=$(BUILD)/host/gen/%.o)
HOST_LIB := $(BUILD)/host/librpcgate.a
HOST_LDLIBS := -libverbs -lrdmacm -lprotobuf-c -lz -lcares -lnghttp2 -lssl -lcrypto -lcmocka -lpthread -lm

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/host/tests/unit/%)
# Integration tests are cmocka programs too; they drive the real static
# binary (TEST_RPCGATE_BIN) as separate processes.
INTEG_SRCS := $(wildcard tests/integration/test_*.c)
INTEG_BINS := $(INTEG_SRCS:tests/integration/%.c=$(BUILD)/host/tests/integration/%)

# libFuzzer targets (clang): tests/fuzz/fuzz_*.c, each linked with the
# sources it names in a `// fuzz-sources:` line.  `make fuzz` runs each
# for FUZZ_SECONDS; `make check` runs each briefly from its seed corpus.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_CC := clang
FUZZ_CFLAGS := -std=gnu11 -g -O1 -Inet -Irdma -Iapp $(GEN_INC) \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_SECONDS ?= 60
FUZZ_CHECK_SECONDS ?= 10

.PHONY: all deps check unit integration fuzz run bench bench-rdma bench-gateway bench-http bench-grpc bench-tls format \
	bench-overload soak \
	clean image oci test-rxe test-image test-docs test-http test-overload test-tls test-etcd test-grpc \
	kernel stamps layers

all: $(BUILD)/rpcgate

deps:
	@scripts/deps $(DEPS_PKGS)

$(BUILD)/musl-inc/.stamp: | deps
	@mkdir -p $(@D)
	@for h in $(MUSL_INC_LINKS); do ln -sfn /usr/include/$$h $(@D)/$$h; done
	@ln -sfn /usr/include/x86_64-linux-gnu/asm $(@D)/asm
	@# OpenSSL's headers are split: the two of its build configuration
	@# live under the multiarch folder.
	@rm -rf $(@D)/openssl && mkdir -p $(@D)/openssl
	@for f in /usr/include/openssl/*.h \
		/usr/include/x86_64-linux-gnu/openssl/*.h; do \
		ln -sfn $$f $(@D)/openssl/; done
	@touch $@

# Generated files are kept, not treated as intermediates.
.SECONDARY: $(GEN_SRCS) $(GEN_HDRS) $(DESC_PROTOS:%.proto=$(BUILD)/gen/%.desc) \
	$(TEST_GEN)/kitchen.desc $(TEST_GEN)/kitchen.desc.c
$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: %.proto | deps
	@mkdir -p $(@D)
	protoc-c --proto_path=$(<D) --c_out=$(@D) $<

$(BUILD)/gen/%.desc: %.proto | deps
	@mkdir -p $(@D)
	protoc-c --proto_path=$(<D) --include_imports -o $@ $<

$(BUILD)/gen/%.desc.c: $(BUILD)/gen/%.desc scripts/bin2c
	scripts/bin2c $< $(notdir $*)_proto_desc > $@

# Generated under package ktest: the same wire bytes, other C names than
# app/proto/echo.proto's (both define example.EchoService).
$(TEST_GEN)/kitchen.pb-c.c $(TEST_GEN)/kitchen.pb-c.h: $(KITCHEN_PROTO) | deps
	@mkdir -p $(@D)/ktest
	sed 's/^package example;/package ktest;/' $< > $(@D)/ktest/kitchen.proto
	protoc-c --proto_path=$(@D)/ktest --c_out=$(@D) $(@D)/ktest/kitchen.proto

$(TEST_GEN)/kitchen.desc: $(KITCHEN_PROTO) | deps
	@mkdir -p $(@D)
	protoc-c --proto_path=$(<D) --include_imports -o $@ $<

# The same set as C bytes, for the fuzz targets.
$(TEST_GEN)/kitchen.desc.c: $(TEST_GEN)/kitchen.desc scripts/bin2c
	scripts/bin2c $< kitchen_proto_desc > $@

$(BUILD)/musl/%.o: %.c $(BUILD)/musl-inc/.stamp | $(GEN_HDRS)
	@mkdir -p $(@D)
	$(MUSL_CC) $(MUSL_CFLAGS) -c $< -o $@

$(BUILD)/musl/gen/%.o: $(BUILD)/gen/%.c $(BUILD)/musl-inc/.stamp
	@mkdir -p $(@D)
	$(MUSL_CC) $(filter-out $(GEN_CFLAGS_FILTER),$(MUSL_CFLAGS)) -c $< -o $@

$(BUILD)/rpcgate: $(MUSL_OBJS)
	$(MUSL_CC) -static -pthread -O2 $(MUSL_LTO) -o $@ $(MUSL_OBJS) \
		$(STATIC_LIBS)
	@printf 'built %s: %s bytes, %s\n' $@ $$(stat -c %s $@) \
		"$$(file -b $@ | cut -d, -f1,4)"

# `make stamps`: the same binary with stage time stamps compiled in
# (net/base/stamp.h), for `scripts/bench-echo --stamps`.  Own objects;
# never shipped.
STAMP_OBJS := $(ALL_SRCS:%.c=$(BUILD)/stamps/%.o) \
	$(GEN_SRCS:$(BUILD)/gen/%.c=$(BUILD)/musl/gen/%.o)

$(BUILD)/stamps/%.o: %.c $(BUILD)/musl-inc/.stamp | $(GEN_HDRS)
	@mkdir -p $(@D)
	$(MUSL_CC) $(MUSL_CFLAGS) -DRPCGATE_STAMPS -c $< -o $@

$(BUILD)/stamps/rpcgate: $(STAMP_OBJS)
	$(MUSL_CC) -static -pthread -O2 $(MUSL_LTO) -o $@ $(STAMP_OBJS) \
		$(STATIC_LIBS)

stamps: $(BUILD)/stamps/rpcgate

$(BUILD)/host/%.o: %.c | deps $(GEN_HDRS)
	@mkdir -p $(@D)
	$(HOST_CC) $(HOST_CFLAGS) -c $< -o $@

$(BUILD)/host/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(@D)
	$(HOST_CC) $(filter-out $(GEN_CFLAGS_FILTER),$(HOST_CFLAGS)) -c $< -o $@

$(HOST_LIB): $(HOST_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/host/tests/%: tests/%.c $(HOST_LIB) $(TEST_GEN_OBJS) | $(TEST_DESCS)
	@mkdir -p $(@D)
	$(HOST_CC) $(HOST_CFLAGS) -Itests -I$(TEST_GEN) $< -o $@ \
		$(TEST_GEN_OBJS) $(HOST_LIB) $(HOST_LDLIBS)

# The sources a fuzz target needs are listed in the target itself.
fuzz_sources = $(shell sed -n 's|^// fuzz-sources: ||p' $(1))
.SECONDEXPANSION:
$(BUILD)/fuzz/%: tests/fuzz/%.c $$(call fuzz_sources,tests/fuzz/%.c) \
		| deps $(GEN_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(filter %.c %.a,$^) -o $@ -lz -lnghttp2 -lssl -lcrypto \
		-lpthread -lm

fuzz: $(FUZZ_BINS)
	@scripts/run-fuzz $(FUZZ_SECONDS) $(FUZZ_BINS)

# What the test programs are told: the binary, brpc's vectors, the
# descriptor sets made for them.
TEST_ENV := TEST_RPCGATE_BIN=$(BUILD)/rpcgate TEST_VECTORS_DIR=$(VECTORS) \
	TEST_DESC_DIR=$(TEST_GEN)

unit: $(UNIT_BINS)
	@$(TEST_ENV) scripts/run-tests $(UNIT_BINS)

integration: $(INTEG_BINS) $(BUILD)/rpcgate
	@$(TEST_ENV) scripts/run-tests $(INTEG_BINS)

# The house rules first (a second, before any build), then the fuzz smoke
# (libFuzzer prints its own lines), one run of every tier's cmocka
# programs ending in one summary, the stamps, HTTP/JSON with real clients,
# overload, a two-minute soak, the README's tour, the container and the
# VMs.
check: layers $(UNIT_BINS) $(INTEG_BINS) $(BUILD)/rpcgate $(FUZZ_BINS) \
	image $(BUILD)/stamps/rpcgate $(TEST_DESCS)
	@FUZZ_SEED=1 scripts/run-fuzz $(FUZZ_CHECK_SECONDS) $(FUZZ_BINS)
	@$(TEST_ENV) scripts/run-tests $(UNIT_BINS) $(INTEG_BINS)
	@tests/stamps/test-stamps $(BUILD)/stamps/rpcgate $(BUILD)/rpcgate
	@$(TEST_ENV) tests/http/test-http
	@$(TEST_ENV) tests/overload/test-overload
	@scripts/deps nginx-light libnginx-mod-stream
	@$(TEST_ENV) tests/tls/test-tls
	@scripts/deps etcd-server etcd-client
	@$(TEST_ENV) tests/etcd/test-etcd
	@scripts/deps $(GRPC_PKGS)
	@$(TEST_ENV) tests/grpc/test-grpc
	@SOAK_S=120 SOAK_SAMPLE_S=3 SOAK_RSS_NOISE_KIB=2048 scripts/soak \
		--out=$(BUILD)/soak-check
	@tests/docs/test-readme
	@tests/image/test-oci $(BUILD)/rpcgate
	@tests/rxe/test-vm

layers: | deps
	@scripts/check-layers
	@tests/layers/test-check-layers

# HTTP/1.1 + JSON against the binary with curl, http.client and raw
# sockets (tests/http/test-http).
test-http: $(BUILD)/rpcgate $(TEST_DESCS)
	@$(TEST_ENV) tests/http/test-http

# Overload and exhaustion against the binary: descriptors, a connection
# flood, the adaptive limiter, a slow reader (tests/overload/test-overload).
test-overload: $(BUILD)/rpcgate
	@$(TEST_ENV) tests/overload/test-overload

# TLS with real peers: openssl s_client/s_server, curl, nginx's TLS
# stream proxy, python's ssl (tests/tls/test-tls).
test-tls: $(BUILD)/rpcgate
	@scripts/deps nginx-light libnginx-mod-stream
	@$(TEST_ENV) tests/tls/test-tls

# etcd naming, registration and live routes against a real 3-member
# etcd cluster on loopback (tests/etcd/test-etcd).
test-etcd: $(BUILD)/rpcgate
	@scripts/deps etcd-server etcd-client
	@$(TEST_ENV) tests/etcd/test-etcd

# gRPC over HTTP/2 against the reference implementation's client
# (tests/grpc/test-grpc).
GRPC_PKGS := python3-grpcio python3-grpc-tools nghttp2-client
test-grpc: $(BUILD)/rpcgate
	@scripts/deps $(GRPC_PKGS)
	@$(TEST_ENV) tests/grpc/test-grpc

# README.md's tour, run as printed (tests/docs/test-readme).
test-docs: $(BUILD)/rpcgate image
	@tests/docs/test-readme

# The VM image: Debian's kernel (fetched once into build/cache) and an
# initramfs with the binary as /init.
image: $(BUILD)/vm/initramfs.cpio

$(BUILD)/vm/initramfs.cpio: $(BUILD)/rpcgate image/mkvm | deps
	@image/mkvm --binary=$(BUILD)/rpcgate --out=$(BUILD)/vm \
		--cache=$(BUILD)/cache

oci: $(BUILD)/rpcgate-oci.tar

$(BUILD)/rpcgate-oci.tar: $(BUILD)/rpcgate image/mkoci
	@image/mkoci --binary=$(BUILD)/rpcgate --out=$@

# The optional minimal kernel (kernel-cfg/rpcgate.config, everything built
# in) from Debian's linux-source, and build/vm-min/ booting it; test it
# with `VM_DIR=build/vm-min tests/rxe/test-vm`.  Not part of check: the
# build takes long on two cores.
KERNEL_PKGS := linux-source flex bison bc libelf-dev
kernel: $(BUILD)/rpcgate | deps
	@dpkg -s $(KERNEL_PKGS) >/dev/null 2>&1 || \
		apt-get install -y -qq $(KERNEL_PKGS)
	@image/mkkernel --out=$(BUILD)/kernel
	@image/mkvm --binary=$(BUILD)/rpcgate --out=$(BUILD)/vm-min \
		--kernel=$(BUILD)/kernel/bzImage

test-rxe: image
	@scripts/deps $(GRPC_PKGS)
	@tests/rxe/test-vm

test-image: $(BUILD)/rpcgate
	@tests/image/test-oci $(BUILD)/rpcgate

# The main job: echo in the appliance VM, its port forwarded to the host;
# Ctrl-C shuts the VM down.  RUN_PORT picks the host port.
RUN_PORT ?= 8000
run: image
	@scripts/vm appliance --port=$(RUN_PORT)

# The raw limit the benchmark compares against: a plain TCP ping-pong.
$(BUILD)/pingpong: tests/bench/pingpong.c $(BUILD)/musl-inc/.stamp
	$(MUSL_CC) -static -std=gnu11 -O2 $(WARN) -pthread $< -o $@

# The same for RDMA, with an event loop's wait (scripts/bench-rdma packs
# it into the VM): static like build/rpcgate, on the same archives.
$(BUILD)/rdma_pingpong: tests/bench/rdma_pingpong.c rdma/glibc_fortify.c \
		$(BUILD)/musl-inc/.stamp
	$(MUSL_CC) -static -std=gnu11 -O2 $(WARN) -pthread -isystem \
		$(BUILD)/musl-inc -DRDMA_STATIC_PROVIDERS=rxe \
		tests/bench/rdma_pingpong.c rdma/glibc_fortify.c -o $@ \
		$(STATIC_LIBS)

bench: $(BUILD)/rpcgate $(BUILD)/pingpong
	@RPCGATE_BIN=$(BUILD)/rpcgate PINGPONG_BIN=$(BUILD)/pingpong \
		scripts/bench-echo

# What the gateway adds to a call, next to what nginx adds to an HTTP
# request (scripts/bench-gateway; nginx and wrk from Debian).
bench-gateway: $(BUILD)/rpcgate image
	@scripts/deps nginx-light wrk
	scripts/bench-gateway

# TLS handshakes and kept-alive HTTPS against nginx, baidu_std over TLS
# against plain (scripts/bench-tls).
bench-tls: $(BUILD)/rpcgate
	@scripts/deps nginx-light libnginx-mod-http-echo wrk openssl
	scripts/bench-tls

# HTTP/1.1 + JSON against nginx with wrk, and instructions per call
# (scripts/bench-http).
bench-http: $(BUILD)/rpcgate
	@scripts/deps nginx-light wrk valgrind
	scripts/bench-http --callgrind

# gRPC unary calls against nghttpd and a grpcio server with h2load, the
# gateway's added latency, and instructions per call (scripts/bench-grpc).
bench-grpc: $(BUILD)/rpcgate
	@scripts/deps $(GRPC_PKGS) nghttp2-server valgrind
	scripts/bench-grpc --callgrind

# max_concurrency=auto against fixed limits at 1x, 2x, 4x a backend's
# capacity (scripts/bench-overload).
bench-overload: $(BUILD)/rpcgate
	scripts/bench-overload

# 30 minutes (SOAK_S) of mixed load through a gateway under a fault loop,
# sampled, with a table and a plot in build/soak/ (scripts/soak).
soak: $(BUILD)/rpcgate
	@scripts/deps python3-matplotlib
	scripts/soak

# RDMA vs TCP vs the raw verbs limit, in one VM (scripts/bench-rdma).
bench-rdma: $(BUILD)/rpcgate $(BUILD)/rdma_pingpong image
	scripts/bench-rdma

format:
	clang-format -i $(ALL_SRCS) $(wildcard net/*/*.h rdma/*.h app/*.h \
		tests/unit/*.[ch] tests/integration/*.[ch] tests/bench/*.c)

clean:
	rm -rf $(BUILD)

-include $(MUSL_OBJS:.o=.d) $(STAMP_OBJS:.o=.d) $(HOST_LIB_OBJS:.o=.d) \
	$(UNIT_BINS:=.d) \
	$(INTEG_BINS:=.d)
