return {x = {}, y = {}, z = {}}
