"""Drop-in integrations with other libraries (``qgfast.integrations.monai``)."""
