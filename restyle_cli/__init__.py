"""The composition root: the `restyle` command wires the model side (restyle), the exporters
(export) and the job service (client_api) together. Nothing below imports this package."""
