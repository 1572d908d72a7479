"""One module per Hubble metric family (cilium pkg/hubble/metrics/<family>)."""
