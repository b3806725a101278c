"""Where resources and endpoints come from: manifest files, static endpoint lists, Kubernetes."""
