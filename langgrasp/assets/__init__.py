"""Files shipped inside the package: the demo bundle (``demo-tiny``)."""
