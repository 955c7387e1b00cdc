"""Architecture search: data sets, a weight-sharing supernet (torch) and export of a subnet to int8."""
