// Command cert-manager-controller is a minimal, test-only cert-manager
// controller for ncp-pca-issuer's integration tests.
//
// It is our own small program written against cert-manager's public
// pkg/controller API (NewContextFactory, Known, Interface.Run). It is not
// upstream's cmd/controller, which is a separate nested Go module that the
// module proxy cannot serve.
//
// Differences from the chart-deployed controller, on purpose:
//   - no leader election, no metrics / healthz / pprof listeners: the only
//     network connections are outbound ones to the apiserver;
//   - only the controllers needed to drive Certificates through
//     CertificateRequests to an issuer, and the Ingress certificate-shim
//     (the default --controllers list); ACME, Vault, Venafi and the Gateway
//     API shim (which needs the Gateway API CRDs) are not linked in;
//   - no webhook: nothing enforces the `approve` RBAC on `signers`, so the
//     approver approves every CertificateRequest, whatever its issuer group.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"

	// Controllers register themselves with controller.Known() in init().
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/ingresses"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// Issuer implementations used by the issuers/clusterissuers controllers.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

const defaultControllers = "certificaterequests-approver," +
	"certificates-trigger,certificates-issuing,certificates-key-manager," +
	"certificates-request-manager,certificates-readiness,certificates-revision-manager," +
	"issuers,clusterissuers," +
	"certificaterequests-issuer-ca,certificaterequests-issuer-selfsigned," +
	"ingress-shim"

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "cert-manager-controller: %v\n", err)
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run() error {
	fs := flag.CommandLine
	kubeconfig := fs.String("kubeconfig", "", "path to a kubeconfig (required unless running in-cluster)")
	crns := fs.String("cluster-resource-namespace", "kube-system",
		"namespace holding the Secrets referenced by ClusterIssuers")
	namespace := fs.String("namespace", "", "watch only this namespace (default: all namespaces)")
	names := fs.String("controllers", defaultControllers, "comma-separated list of controllers to run")
	workers := fs.Int("concurrent-workers", 5, "workers per controller")
	qps := fs.Float64("kube-api-qps", 50, "client-side QPS limit towards the apiserver")
	burst := fs.Int("kube-api-burst", 100, "client-side burst limit towards the apiserver")
	gates := fs.String("feature-gates", "", "cert-manager feature gates, e.g. ServerSideApply=true")
	backoff := fs.Duration("certificate-request-minimum-backoff-duration", time.Hour,
		"initial backoff before re-issuing after a failed CertificateRequest (upstream default 1h)")
	klog.InitFlags(fs) // -v, -logtostderr, ...
	logf.InitLogs()
	flag.Parse()
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *gates != "" {
		if err := utilfeature.DefaultMutableFeatureGate.Set(*gates); err != nil {
			return fmt.Errorf("--feature-gates: %w", err)
		}
	}

	var enabled []string
	for _, n := range strings.Split(*names, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if _, ok := controller.Known()[n]; !ok {
			known := make([]string, 0, len(controller.Known()))
			for k := range controller.Known() {
				known = append(known, k)
			}
			sort.Strings(known)
			return fmt.Errorf("unknown controller %q (known: %s)", n, strings.Join(known, ","))
		}
		enabled = append(enabled, n)
	}
	if len(enabled) == 0 {
		return errors.New("--controllers is empty")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	log := logf.FromContext(ctx)

	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   float32(*qps),
		KubernetesAPIBurst: *burst, // must be > 0 when QPS > 0
		Namespace:          *namespace,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace: *crns,
		},
		// Upstream's defaults: an Ingress names its issuer with annotations.
		IngressShimOptions: controller.IngressShimOptions{
			DefaultIssuerKind:                 "Issuer",
			DefaultIssuerGroup:                "cert-manager.io",
			DefaultAutoCertificateAnnotations: []string{"kubernetes.io/tls-acme"},
		},
		CertificateOptions: controller.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: *backoff,
			// Upstream's default copiedAnnotationPrefixes.
			CopiedAnnotationPrefixes: []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
		},
	})
	if err != nil {
		return err
	}
	// The factory's Context carries the shared informer factories that every
	// controller registers its informers on.
	base, err := factory.Build()
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, n := range enabled {
		iface, err := controller.Known()[n](factory)
		if err != nil {
			return fmt.Errorf("constructing controller %q: %w", n, err)
		}
		log.V(logf.InfoLevel).Info("starting controller", "controller", n)
		g.Go(func() error {
			if err := iface.Run(*workers, gctx); err != nil {
				return fmt.Errorf("controller %q: %w", n, err)
			}
			return nil
		})
	}

	// Start informers only after every controller has requested its informers.
	base.SharedInformerFactory.Start(gctx.Done())
	base.KubeSharedInformerFactory.Start(gctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(gctx.Done())

	go func() {
		base.SharedInformerFactory.WaitForCacheSync(gctx.Done())
		base.KubeSharedInformerFactory.WaitForCacheSync(gctx.Done())
		base.HTTP01ResourceMetadataInformersFactory.WaitForCacheSync(gctx.Done())
		if gctx.Err() == nil {
			// Stable marker line that test harnesses may wait for.
			fmt.Fprintf(os.Stderr, "cert-manager-controller: caches synced, %d controllers running\n", len(enabled))
		}
	}()

	err = g.Wait()
	base.SharedInformerFactory.Shutdown()
	base.KubeSharedInformerFactory.Shutdown()
	base.HTTP01ResourceMetadataInformersFactory.Shutdown()
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
