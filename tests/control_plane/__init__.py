"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, controller-manager,
scheduler, a process kubelet and a fault-injecting proxy."""
