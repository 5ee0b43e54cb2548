package kubernetes

import (
	"context"
	"fmt"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// restSlices is EndpointSlices over a REST client that knows only the
// discovery.k8s.io/v1 types (and the API's own: lists' options, Status,
// watch events), as client-go's typed client does with every group.
type restSlices struct {
	client    rest.Interface
	params    runtime.ParameterCodec
	namespace string
}

func newRESTSlices(rc *rest.Config, namespace string) (*restSlices, error) {
	scheme := runtime.NewScheme()
	if err := discoveryv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("discovery: kubernetes: scheme: %w", err)
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	cfg := rest.CopyConfig(rc)
	cfg.GroupVersion = &discoveryv1.SchemeGroupVersion
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = "consensusd-discovery"
	}
	client, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery: kubernetes: client: %w", err)
	}
	return &restSlices{client: client, params: runtime.NewParameterCodec(scheme), namespace: namespace}, nil
}

// List lists the namespace's EndpointSlices.
func (r *restSlices) List(ctx context.Context, opts metav1.ListOptions) (*discoveryv1.EndpointSliceList, error) {
	list := &discoveryv1.EndpointSliceList{}
	err := r.client.Get().Namespace(r.namespace).Resource("endpointslices").
		VersionedParams(&opts, r.params).Do(ctx).Into(list)
	return list, err
}

// Watch watches the namespace's EndpointSlices.
func (r *restSlices) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return r.client.Get().Namespace(r.namespace).Resource("endpointslices").
		VersionedParams(&opts, r.params).Watch(ctx)
}
