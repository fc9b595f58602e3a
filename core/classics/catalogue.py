"""Every classic, by its id (the page's ?classic= value), in the order the page lists them."""

from core.classics.glorot2010 import GLOROT2010
from core.classics.he2015 import HE2015
from core.classics.ioffe2015 import IOFFE2015
from core.classics.pascanu2013 import PASCANU2013
from core.classics.saxe2013 import SAXE2013
from core.classics.schoenholz2016 import SCHOENHOLZ2016

CLASSICS = {c.id: c for c in (GLOROT2010, HE2015, IOFFE2015, SAXE2013, PASCANU2013,
                              SCHOENHOLZ2016)}
